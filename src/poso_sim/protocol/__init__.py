"""poso_sim.protocol: the PoSo rules as sans-I/O state machines (events in, actions out).

No asyncio, no clock, no sockets: a host (the virtual-time runtime, or a unit test) feeds events to
`Delegate.handle` / `NormalNode.handle` and carries out the returned actions. See docs/protocol.md.
"""

from .behaviours import (
    REFERENCE_KEYS,
    Behaviour,
    BehavingDelegate,
    Crash,
    Delay,
    Equivocate,
    FollowerCollusion,
    FollowerError,
    FollowerFeasible,
    FollowerIgnore,
    ForgedMultipliers,
    LeaderSends,
    Replay,
    Silence,
    TrickError,
    TrickIgnore,
    from_reference_keys,
)
from .delegate import MEASURED, Delegate, DelegateStatus, Exclusion, RoundState, VerifyCost, leader_for, round_timer
from .events import (
    HEIGHT_ENDS,
    Abandoned,
    AcceptedUnchecked,
    Action,
    CancelTimer,
    ConflictingDecisions,
    Crashed,
    Decide,
    DecisionSeen,
    Dropped,
    Event,
    Exclude,
    Execute,
    GaveUp,
    MessageReceived,
    NoMajority,
    Note,
    OwnPlanRejected,
    ProofReceived,
    Received,
    Rejected,
    RoundStarted,
    Send,
    SolutionReady,
    Solve,
    Start,
    StartTimer,
    TimerExpired,
    VerificationDone,
    Verdict,
    Verified,
    Verify,
)
from .identity import Committee, KeyPair, NodeId, SignatureCache, Signer, make_committee, make_keys, check_signature
from .messages import (
    GENESIS_HASH,
    VERSION,
    Block,
    Decision,
    Message,
    MisbehaviourProof,
    Payload,
    Proposal,
    Relay,
    canonical,
    message_problem,
    check_chain,
)
from .normal import NormalNode, height_timer

__all__ = [
    # identities
    "NodeId", "KeyPair", "Signer", "check_signature", "SignatureCache", "Committee", "make_keys", "make_committee",
    # messages
    "VERSION", "GENESIS_HASH", "canonical", "Payload", "Proposal", "Relay", "MisbehaviourProof", "Decision",
    "Block", "Message", "message_problem", "check_chain",
    # events / actions
    "Event", "Start", "MessageReceived", "TimerExpired", "VerificationDone", "SolutionReady", "Verdict",
    "Action", "Send", "StartTimer", "CancelTimer", "Verify", "Solve", "Decide", "Exclude", "Execute",
    # notes (actions that only record)
    "Note", "RoundStarted", "Abandoned", "Received", "Verified", "Rejected", "OwnPlanRejected", "AcceptedUnchecked",
    "ProofReceived", "DecisionSeen", "Dropped", "GaveUp", "ConflictingDecisions", "NoMajority", "Crashed",
    "HEIGHT_ENDS",
    # machines
    "Delegate", "NormalNode", "RoundState", "Exclusion", "leader_for", "round_timer", "height_timer",
    "DelegateStatus", "VerifyCost", "MEASURED",
    # behaviours
    "Behaviour", "BehavingDelegate", "FollowerIgnore", "FollowerError", "FollowerFeasible", "FollowerCollusion",
    "TrickIgnore", "TrickError", "LeaderSends", "Equivocate", "ForgedMultipliers", "Delay", "Crash", "Silence",
    "Replay",
    "REFERENCE_KEYS", "from_reference_keys",
]
