"""Typed, versioned protocol messages with a canonical byte encoding.

Every message is a frozen dataclass with a class-level `kind`, a `version` (currently 1), a canonical encoding
`encode()` (used for hashing and for signing envelopes that contain it) and, for signed messages,
`signing_bytes()` (what the signature covers: a domain tag, the kind, the version and every field except the
signature). The encoding is compact JSON with sorted keys; bytes are hex, floats use Python's shortest
round-trip repr. Messages travel between nodes as objects (the runtime is in-process); the encoding only
serves signatures and hashes.

A message is immutable, so its encodings and its validation (`message_problem`) are pure functions of the
object: each is computed once per message object and kept on it (one relay object reaches every receiver, and
N receivers would otherwise rebuild the same canonical JSON N times; a delegate keeps there, too, a copy's path
verdict for its committee and whose signature on it fails for its check and keys). `dataclasses.replace` makes a
new object with nothing memoised; equality, hashing, pickling and copying look only at the fields (the memos,
attributes named with a leading underscore, are left out of a pickle or a copy).

A `Payload` is the protocol's view of a solution: its `digest` (hex SHA-256, computed by the solver layer).
The solution object itself rides along in `Payload.solution`, which is excluded from equality, hashing and
signatures, as are the reporting hints `label` and `claimed_cost`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from poso_sim.common import canonical_json, plain_json_encoder

from .identity import NodeId, NotedKeyPair, SignatureCache, Signer, check_signature

VERSION = 1
DOMAIN = b"poso-sim/protocol/"
GENESIS_HASH = "0" * 64


def canonical(obj: Any) -> bytes:
    """Canonical bytes of a JSON-like value (dict keys sorted, no whitespace, bytes as hex)."""
    return canonical_json(obj).encode()


_ENCODE_PLAIN = plain_json_encoder()
#: message class -> its fields, all set by `__init__` (empty: the class needs `dataclasses.replace`)
_INIT_FIELDS: dict[type, tuple[str, ...]] = {}
_PLAIN = frozenset({str, int, float})


def _canonical_body(body: dict[str, Any]) -> bytes:
    """`canonical(body)` for a message body: a dict of str, int and float values and lists of str (what the fields
    of a well-formed message give) is encoded directly, without `jsonable`'s pass and the encoder's per-call
    set-up (a message's signing bytes and encoding are made once per object, but every signed message needs
    them); anything else (a hostile field, a numpy number) takes the general path. The same bytes either way."""
    for v in body.values():
        t = type(v)
        if t not in _PLAIN and not (t is list and all(type(x) is str for x in v)):
            return canonical(body)
    return _ENCODE_PLAIN(body).encode()


#: JSON text of a str, quotes included, as the canonical encoder writes it (the C function where Python has it)
_str = json.encoder.encode_basestring_ascii


def _float(x: object) -> str | None:
    """The canonical JSON text of ``float(x)`` for an exact int or float whose value is finite, else None."""
    t = type(x)
    if t is float or t is int:
        f = float(x)  # type: ignore[arg-type]
        if f - f == 0.0:  # finite: the encoder writes `float.__repr__`
            return repr(f)
    return None


def _init_fields(cls: type) -> tuple[str, ...]:
    """A message class's fields in order when `__init__` sets them all and the class has no `__post_init__` (an
    object may then be made by writing its fields), else () (the class needs its own `__init__`)."""
    names = _INIT_FIELDS.get(cls)
    if names is None:
        fs = fields(cls)  # type: ignore[arg-type]
        plain = all(f.init for f in fs) and not hasattr(cls, "__post_init__")
        names = _INIT_FIELDS[cls] = tuple(f.name for f in fs) if plain else ()
    return names


def _make_signed(cls: type, signer: Signer, values: dict[str, Any]) -> Any:
    """``cls(**values)._signed(signer)`` (``values`` gives every field, the signature b""): one object, its fields
    written in order, signed over its signing bytes, which it keeps; the same fields, signature and memo.

    Signed by a key pair that notes its signatures in a run's memo (`NotedKeyPair.vouches`), the signature is made
    on demand instead (`_OnDemand`): the object keeps the key pair, and its `signature` is made, noted and kept
    the first time it is read. A check of it through that memo needs no signature (`signed_on_demand`); anything
    that reads it (a certificate, an encoding, equality) gets the very signature signing now would give."""
    names = _init_fields(cls)
    if not names:
        return cls(**values)._signed(signer)
    new = object.__new__(cls)
    d = new.__dict__
    for name in names:
        d[name] = values[name]
    keys = signer.keys
    if type(signer) is Signer and signer.enabled and type(keys) is NotedKeyPair and keys.vouches():
        del d["signature"]  # made on demand (`_OnDemand`)
        d["_signer"] = keys
    else:
        d["signature"] = signer.sign(new.signing_bytes())  # the bytes leave the signature out
    return new


class _OnDemand:
    """The `signature` attribute of a message class whose objects may be signed on demand (`_make_signed`): an
    object that holds its signature (every object made otherwise) gives it as a plain attribute; one that holds
    its key pair instead signs its signing bytes with it on the first read (noting the signature in the run's
    memo, as signing at once does) and keeps the signature. Read on the class: the field's default, b""."""

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return b""
        d = obj.__dict__
        keys = d.get("_signer")
        if keys is None:  # (an object made without its fields, by hand)
            return b""
        sig = d["signature"] = keys.sign(obj.signing_bytes())
        return sig


def signed_on_demand(msg: Any, public: bytes | None, check: Any) -> bool:
    """Whether ``check(public, msg.signature, msg.signing_bytes())`` is true without making the signature: `msg`
    will sign on demand (its signature is not made yet) with a key pair of this process whose public key is
    `public` (and its seed's, `NotedKeyPair.vouches`), and `check` is the `check` of the memo that key pair notes
    its signatures in. By Ed25519's correctness that check would answer true from the noted signature; it is
    counted as asked (`SignatureCache.calls`). False means nothing: ask `check` itself."""
    d = msg.__dict__
    if "signature" in d:
        return False
    keys = d.get("_signer")
    if keys is None or keys.public != public:
        return False
    cache = keys.cache
    if getattr(check, "__self__", None) is not cache or getattr(check, "__func__", None) is not SignatureCache.check:
        return False
    if cache.limit <= 0:
        return False
    cache.calls += 1
    return True


def signature_pending(msg: Any) -> bool:
    """Whether `msg` signs on demand and has not made its signature yet (reading `signature` would make it)."""
    d = msg.__dict__
    return "signature" not in d and "_signer" in d


def _signature_ok(msg: Any) -> bool:
    """Whether a message's signature is bytes, without making one made on demand (it is)."""
    d = msg.__dict__
    if "signature" not in d and "_signer" in d:
        return True
    return isinstance(msg.signature, (bytes, bytearray))


def _is_hex_digest(s: object) -> bool:
    if not isinstance(s, str) or len(s) != 64:
        return False
    try:
        int(s, 16)
    except ValueError:
        return False
    return True


def _is_name(s: object) -> bool:
    return isinstance(s, str) and 0 < len(s) <= 64


def _is_pos_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def _is_float(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


@dataclass(frozen=True)
class Payload:
    """Opaque reference to a solution: only `digest` is signed and compared."""

    digest: str
    label: str = field(default="", compare=False)
    claimed_cost: float | None = field(default=None, compare=False)
    solution: Any = field(default=None, compare=False, repr=False)

    def body(self) -> dict[str, Any]:
        return {"digest": self.digest}

    def problem(self) -> str | None:
        if not _is_hex_digest(self.digest):
            return "payload digest is not 64 hex characters"
        return None


class _Message:
    kind: ClassVar[str] = ""
    version: int
    #: a delegate's memo of this object as a copy it checked (`protocol.delegate`), set on the object itself; the
    #: class's None reads as "none" without a lookup in the object's dict
    _taken: ClassVar[Any] = None

    def body(self) -> dict[str, Any]:  # every field except the signature
        raise NotImplementedError

    def _signing_text(self) -> str | None:
        """``canonical({"v": version, **body()})`` as text, written directly by a class that knows its fields
        when each is of the exact type a well-formed message has; None: the general path."""
        return None

    def signing_bytes(self) -> bytes:
        """What the signature covers (computed once per message object)."""
        memo = self.__dict__
        out = memo.get("_signing_bytes")
        if out is None:
            text = self._signing_text()
            body = _canonical_body({"v": self.version, **self.body()}) if text is None else text.encode()
            out = memo["_signing_bytes"] = DOMAIN + self.kind.encode() + b"/" + body
        return out

    def _signed(self, signer: Signer) -> Any:
        """This (unsigned) message with `signer`'s signature over its signing bytes: `dataclasses.replace` of the
        signature, made by copying the fields (a message class has neither `__post_init__` nor `init=False` fields;
        one that has goes through `replace`). The signing bytes, which leave the signature out, are kept on the
        signed object."""
        data = self.signing_bytes()
        sig = signer.sign(data)
        cls = type(self)
        names = _init_fields(cls)
        if not names:
            return replace(self, signature=sig)
        new = object.__new__(cls)
        d, mine = new.__dict__, self.__dict__
        for name in names:
            d[name] = mine.get(name)  # (the signature is written next)
        d["signature"] = sig
        d["_signing_bytes"] = data
        return new

    def __getstate__(self) -> dict[str, Any]:
        # the fields only: the per-object memos (a relay's path verdict holds its committee) are recomputed; a
        # signature made on demand is made first
        if "_signer" in self.__dict__:
            getattr(self, "signature")
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def _encoded_text(self) -> str | None:
        """`encode()` as text, written directly by a class that knows its fields (None: the general path)."""
        return None

    def encode(self) -> bytes:
        """The canonical encoding, signature included (computed once per message object)."""
        memo = self.__dict__
        out = memo.get("_encoded")
        if out is None:
            text = self._encoded_text()
            if text is not None:
                out = memo["_encoded"] = text.encode()
                return out
            sig = getattr(self, "signature", None)
            extra = {} if sig is None else {"signature": bytes(sig).hex() if isinstance(sig, (bytes, bytearray)) else sig}
            out = memo["_encoded"] = _canonical_body({"kind": self.kind, "v": self.version, **self.body(), **extra})
        return out


@dataclass(frozen=True)
class Proposal(_Message):
    """A leader's proposal for (case, height, round), signed by the leader over those and the digest.

    `instance` is the fingerprint of the problem instance the plan solves (64 hex) when every height has its own
    instance, else "" (one problem for the whole run). It is signed with the rest; an empty `instance` is left
    out of the signing bytes, so proposals of single-problem runs encode exactly as before the field existed."""

    kind: ClassVar[str] = "proposal"
    case_id: str
    height: int
    round: int
    leader: NodeId
    payload: Payload
    signature: bytes = b""
    version: int = VERSION
    instance: str = ""

    def body(self) -> dict[str, Any]:
        out = {
            "case_id": self.case_id,
            "height": self.height,
            "round": self.round,
            "leader": self.leader,
            "digest": self.payload.digest,
        }
        if self.instance:
            out["instance"] = self.instance
        return out

    def _text(self, head: str, tail: str) -> str | None:
        """The canonical JSON text of ``body()`` with `head` (keys sorting before "leader") and `tail` (after
        "instance") written in, for fields of the exact types a well-formed proposal has, else None."""
        case_id, height, round, leader, instance = self.case_id, self.height, self.round, self.leader, self.instance
        digest = getattr(self.payload, "digest", None)
        if not (type(case_id) is str and type(leader) is str and type(digest) is str and type(instance) is str
                and type(height) is int and type(round) is int):
            return None
        inst = f',"instance":{_str(instance)}' if instance else ""
        return (f'{{"case_id":{_str(case_id)},"digest":{_str(digest)},"height":{height:d}{inst}{head}'
                f',"leader":{_str(leader)},"round":{round:d}{tail}}}')

    def _signing_text(self) -> str | None:
        v = self.version
        return None if type(v) is not int else self._text("", f',"v":{v:d}')

    def _encoded_text(self) -> str | None:
        """`encode()` as text (kind, fields, signature as hex, version) for plain fields, else None."""
        v, sig = self.version, self.signature
        if type(v) is not int or type(sig) is not bytes:
            return None
        return self._text(',"kind":"proposal"', f',"signature":"{sig.hex()}","v":{v:d}')

    @classmethod
    def make(
        cls, signer: Signer, *, case_id: str, height: int, round: int, leader: NodeId, payload: Payload,
        instance: str = "",
    ) -> "Proposal":
        return _make_signed(cls, signer, {"case_id": case_id, "height": height, "round": round, "leader": leader,
                                          "payload": payload, "signature": b"", "version": VERSION,
                                          "instance": instance})

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "unsupported version"
        if not isinstance(self.case_id, str):
            return "case_id is not a string"
        if not isinstance(self.instance, str) or (self.instance and not _is_hex_digest(self.instance)):
            return "instance is not a 64-hex fingerprint"
        if not (_is_pos_int(self.height) and _is_pos_int(self.round)):
            return "height/round must be positive integers"
        if not _is_name(self.leader):
            return "leader is not a name"
        if not isinstance(self.payload, Payload):
            return "payload is not a Payload"
        if not _signature_ok(self):
            return "signature is not bytes"
        return self.payload.problem()

    def signed_by_leader(self, public: bytes | None) -> bool:
        return check_signature(public, self.signature, self.signing_bytes())


@dataclass(frozen=True)
class Relay(_Message):
    """The leader's signed proposal, unchanged, in an envelope signed by the relay.

    `path` is the send path: the leader first, then each relay in order; the last element is `relayer`.
    The relay signs (the full encoding of the proposal including the leader's signature, the path)."""

    kind: ClassVar[str] = "relay"
    proposal: Proposal
    path: tuple[NodeId, ...]
    relayer: NodeId
    signature: bytes = b""
    version: int = VERSION

    def body(self) -> dict[str, Any]:
        return {
            "proposal": self.proposal.encode().decode(),
            "path": list(self.path),
            "relayer": self.relayer,
        }

    def _signing_text(self) -> str | None:
        path, relayer, v = self.path, self.relayer, self.version
        if not (type(path) is tuple and type(relayer) is str and type(v) is int and all(type(x) is str for x in path)):
            return None
        proposal = self.proposal.encode().decode()
        return f'{{"path":[{",".join(map(_str, path))}],"proposal":{_str(proposal)},"relayer":{_str(relayer)},"v":{v:d}}}'

    @classmethod
    def make(cls, signer: Signer, *, proposal: Proposal, path: tuple[NodeId, ...], relayer: NodeId) -> "Relay":
        return _make_signed(cls, signer, {"proposal": proposal, "path": tuple(path), "relayer": relayer,
                                          "signature": b"", "version": VERSION})

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "unsupported version"
        if not isinstance(self.proposal, Proposal):
            return "relay does not wrap a Proposal"
        p = self.proposal.problem()
        if p:
            return p
        if not isinstance(self.path, tuple) or not all(_is_name(x) for x in self.path):
            return "path is not a tuple of names"
        if not _is_name(self.relayer):
            return "relayer is not a name"
        if not _signature_ok(self):
            return "signature is not bytes"
        return None


@dataclass(frozen=True)
class MisbehaviourProof(_Message):
    """Evidence that `proposal.leader` signed a proposal whose payload fails verification.

    Self-contained: a receiver checks the leader's signature on the proposal and re-verifies the payload
    itself before excluding anyone (a lying reporter cannot frame an honest leader)."""

    kind: ClassVar[str] = "misbehaviour"
    proposal: Proposal
    reason: str
    reporter: NodeId
    signature: bytes = b""
    version: int = VERSION

    def body(self) -> dict[str, Any]:
        return {"proposal": self.proposal.encode().decode(), "reason": self.reason, "reporter": self.reporter}

    @classmethod
    def make(cls, signer: Signer, *, proposal: Proposal, reason: str, reporter: NodeId) -> "MisbehaviourProof":
        return _make_signed(cls, signer, {"proposal": proposal, "reason": reason, "reporter": reporter,
                                          "signature": b"", "version": VERSION})

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "unsupported version"
        if not isinstance(self.proposal, Proposal):
            return "proof does not carry a Proposal"
        p = self.proposal.problem()
        if p:
            return p
        if not isinstance(self.reason, str) or not _is_name(self.reporter):
            return "reason/reporter malformed"
        if not _signature_ok(self):
            return "signature is not bytes"
        return None


@dataclass(frozen=True)
class Decision(_Message):
    """A delegate's signed decision for a height: the digest (and its verified cost) of `leader`'s proposal in
    `round`."""

    kind: ClassVar[str] = "decision"
    height: int
    round: int
    leader: NodeId
    digest: str
    cost: float
    delegate: NodeId
    signature: bytes = b""
    case_id: str = ""
    version: int = VERSION

    def body(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "height": self.height,
            "round": self.round,
            "leader": self.leader,
            "digest": self.digest,
            "cost": float(self.cost),
            "delegate": self.delegate,
        }

    @classmethod
    def make(
        cls,
        signer: Signer,
        *,
        height: int,
        round: int,
        leader: NodeId,
        digest: str,
        cost: float,
        delegate: NodeId,
        case_id: str = "",
    ) -> "Decision":
        return _make_signed(cls, signer, {"height": height, "round": round, "leader": leader, "digest": digest,
                                          "cost": float(cost), "delegate": delegate, "signature": b"",
                                          "case_id": case_id, "version": VERSION})

    def _signing_text(self) -> str | None:
        case_id, height, round, leader, digest, delegate, v = (
            self.case_id, self.height, self.round, self.leader, self.digest, self.delegate, self.version)
        cost = _float(self.cost)
        if not (cost is not None and type(case_id) is str and type(leader) is str and type(digest) is str
                and type(delegate) is str and type(height) is int and type(round) is int and type(v) is int):
            return None
        return (f'{{"case_id":{_str(case_id)},"cost":{cost},"delegate":{_str(delegate)},"digest":{_str(digest)},'
                f'"height":{height:d},"leader":{_str(leader)},"round":{round:d},"v":{v:d}}}')

    def content(self) -> tuple[int, int, NodeId, str, float]:
        """What two decisions must share to count for the same outcome."""
        return (self.height, self.round, self.leader, self.digest, float(self.cost))

    def problem(self) -> str | None:
        if self.version != VERSION:
            return "unsupported version"
        if not (_is_pos_int(self.height) and _is_pos_int(self.round)):
            return "height/round must be positive integers"
        if not (_is_name(self.leader) and _is_name(self.delegate)):
            return "leader/delegate is not a name"
        if not _is_hex_digest(self.digest):
            return "digest is not 64 hex characters"
        if not _is_float(self.cost):
            return "cost is not a finite number"
        if not isinstance(self.case_id, str) or not _signature_ok(self):
            return "case_id/signature malformed"
        return None


@dataclass(frozen=True)
class Block:
    """A normal node's chain entry. `hash` = SHA-256 over the canonical header
    (version, height, prev_hash, leader, round, digest, cost). The Decisions are the block's certificate and
    are deliberately outside the hash (and outside equality): two honest normal nodes that saw different (but each majority) sets of
    signatures append the same block."""

    kind: ClassVar[str] = "block"
    height: int
    prev_hash: str
    leader: NodeId
    round: int
    digest: str
    cost: float
    decisions: tuple[Decision, ...] = field(compare=False)
    hash: str = ""
    version: int = VERSION

    @staticmethod
    def header_hash(height: int, prev_hash: str, leader: NodeId, round: int, digest: str, cost: float) -> str:
        header = {
            "kind": "block",
            "v": VERSION,
            "height": height,
            "prev_hash": prev_hash,
            "leader": leader,
            "round": round,
            "digest": digest,
            "cost": float(cost),
        }
        return hashlib.sha256(_canonical_body(header)).hexdigest()

    @classmethod
    def make(
        cls,
        *,
        height: int,
        prev_hash: str,
        leader: NodeId,
        round: int,
        digest: str,
        cost: float,
        decisions: tuple[Decision, ...],
    ) -> "Block":
        h = cls.header_hash(height, prev_hash, leader, round, digest, cost)
        return cls(height, prev_hash, leader, round, digest, float(cost), tuple(decisions), h)

    def recompute_hash(self) -> str:
        return self.header_hash(self.height, self.prev_hash, self.leader, self.round, self.digest, self.cost)

    def fields(self) -> dict[str, Any]:
        """The block as a plain dict, the one schema the run's views and the sweep checker extend: height, round,
        leader, digest, cost, hash, prev_hash (the signed encoding is `encode`)."""
        return {"height": self.height, "round": self.round, "leader": self.leader, "digest": self.digest,
                "cost": self.cost, "hash": self.hash, "prev_hash": self.prev_hash}

    def encode(self) -> bytes:
        return _canonical_body(
            {
                "kind": "block",
                "v": self.version,
                "height": self.height,
                "prev_hash": self.prev_hash,
                "leader": self.leader,
                "round": self.round,
                "digest": self.digest,
                "cost": float(self.cost),
                "decisions": [d.encode().decode() for d in self.decisions],
                "hash": self.hash,
            }
        )


def check_chain(chain: list[Block] | tuple[Block, ...]) -> bool:
    """True iff every block's hash matches its header and links to its predecessor (first to GENESIS_HASH)
    and heights increase strictly."""
    prev = GENESIS_HASH
    last_height = 0
    for b in chain:
        if b.prev_hash != prev or b.recompute_hash() != b.hash or b.height <= last_height:
            return False
        prev, last_height = b.hash, b.height
    return True


MESSAGE_TYPES = (Proposal, Relay, MisbehaviourProof, Decision)

# the classes whose `make` may sign on demand (`_make_signed`): their `signature` is read through `_OnDemand`
# (the dataclass field and its default b"" are unchanged; `__init__` keeps writing the object's own)
for _cls in (Proposal, Relay, MisbehaviourProof, Decision):
    _cls.signature = _OnDemand()  # type: ignore[assignment]
Message = Proposal | Relay | MisbehaviourProof | Decision


_VALID = ""  # the memo's mark of a well-formed message (a problem is never empty)


def message_problem(msg: object) -> str | None:
    """None if `msg` is a well-formed protocol message, else a short reason (never raises). Computed once per
    message object: a message is immutable, and one object reaches every receiver."""
    if not isinstance(msg, MESSAGE_TYPES):
        return f"not a protocol message ({type(msg).__name__})"
    memo = msg.__dict__
    got = memo.get("_problem")
    if got is None:
        try:
            got = msg.problem() or _VALID
        except Exception as exc:  # noqa: BLE001 - a hostile object must never crash a node
            got = f"malformed ({type(exc).__name__})"
        memo["_problem"] = got
    return got or None


__all__ = [
    "VERSION",
    "GENESIS_HASH",
    "canonical",
    "Payload",
    "Proposal",
    "Relay",
    "MisbehaviourProof",
    "Decision",
    "Block",
    "Message",
    "MESSAGE_TYPES",
    "message_problem",
    "signed_on_demand",
    "signature_pending",
    "check_chain",
]
