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
    Silence,
    TrickError,
    TrickIgnore,
    from_reference_keys,
)
from .delegate import Delegate, Exclusion, RoundState, Verdict, leader_for, round_timer
from .events import (
    Action,
    Broadcast,
    CancelTimer,
    Decide,
    Event,
    Exclude,
    Execute,
    MessageReceived,
    Record,
    Send,
    SolutionReady,
    Solve,
    Start,
    StartTimer,
    TimerExpired,
    VerificationDone,
    Verify,
    expand,
)
from .identity import Committee, KeyPair, NodeId, Signer, make_committee, make_keys, verify_sig
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
    verify_chain,
)
from .normal import NormalNode, height_timer

__all__ = [
    # identities
    "NodeId", "KeyPair", "Signer", "verify_sig", "Committee", "make_keys", "make_committee",
    # messages
    "VERSION", "GENESIS_HASH", "canonical", "Payload", "Proposal", "Relay", "MisbehaviourProof", "Decision",
    "Block", "Message", "message_problem", "verify_chain",
    # events / actions
    "Event", "Start", "MessageReceived", "TimerExpired", "VerificationDone", "SolutionReady",
    "Action", "Send", "Broadcast", "StartTimer", "CancelTimer", "Verify", "Solve", "Decide", "Exclude", "Record",
    "Execute", "expand",
    # machines
    "Delegate", "NormalNode", "RoundState", "Exclusion", "Verdict", "leader_for", "round_timer", "height_timer",
    # behaviours
    "Behaviour", "BehavingDelegate", "FollowerIgnore", "FollowerError", "FollowerFeasible", "FollowerCollusion",
    "TrickIgnore", "TrickError", "LeaderSends", "Equivocate", "ForgedMultipliers", "Delay", "Crash", "Silence",
    "REFERENCE_KEYS", "from_reference_keys",
]
