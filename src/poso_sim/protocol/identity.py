"""Identities: Ed25519 key pairs, signing helpers and the committee.

Keys are derived deterministically from seed bytes so a run is reproducible: the Ed25519 private key is the
32-byte seed itself when the seed has exactly 32 bytes, otherwise SHA-256 of the seed.

Ed25519 is libsodium's (PyNaCl): measured on the 2-CPU machine of docs/benchmarks.md it derives a key pair in
22 µs, signs in 23 µs and verifies in 63 µs, where OpenSSL through `cryptography` took 44, 39 and 127 µs. Ed25519
signatures are deterministic, so the signatures (and every trace digest) are the same with either library.
libsodium's verification rejects what OpenSSL's may accept only for crafted inputs (a small-order public key or
`R`, a non-canonical encoding), never a signature made by a key pair of this module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Sequence

from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import CryptoError

NodeId = str

SIGNATURE_LEN = 64
PUBLIC_KEY_LEN = 32


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair. `public` is the 32 raw public-key bytes."""

    seed: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls, seed: bytes) -> "KeyPair":
        raw = seed if len(seed) == 32 else hashlib.sha256(seed).digest()
        return cls(seed=raw, public=_key_pair(raw)[0])

    def sign(self, data: bytes) -> bytes:
        return crypto_sign(data, _key_pair(self.seed)[1])[:SIGNATURE_LEN]

    def noting(self, cache: "SignatureCache") -> "NotedKeyPair":
        """The same key pair, noting each signature it makes in ``cache`` (`SignatureCache.vouch`)."""
        return NotedKeyPair(self.seed, self.public, cache)


@dataclass(frozen=True)
class NotedKeyPair(KeyPair):
    """A key pair that notes every signature it makes in a `SignatureCache` as valid: Ed25519 verification of a
    signature made by the key pair's own secret key is true (the scheme's correctness), so the cache answers the
    machines' checks of it without computing them. A signature it did not make (a forged or altered one) is
    still computed. The scenario runner gives each simulated delegate its key pair this way.

    Only a key pair whose `public` is the public key of its `seed` notes anything (one made by `generate`, or by
    hand with the matching key): a signature is vouched for under the key that verifies it, never another."""

    cache: "SignatureCache | None" = field(default=None, repr=False, compare=False)

    def sign(self, data: bytes) -> bytes:
        public, secret = _key_pair(self.seed)
        sig = crypto_sign(data, secret)[:SIGNATURE_LEN]
        if self.cache is not None and public == self.public:
            self.cache.vouch(public, sig, data)
        return sig

    def vouches(self) -> bool:
        """Whether this key pair notes its signatures as valid: its public key is its seed's and its cache
        memoises (limit > 0). Only then may a message it signs make its signature on demand
        (`poso_sim.protocol.messages`: a check through that cache's `check` is true without it)."""
        cache = self.cache
        return cache is not None and cache.limit > 0 and _key_pair(self.seed)[0] == self.public


@lru_cache(maxsize=4096)
def _key_pair(raw: bytes) -> tuple[bytes, bytes]:
    """(public key, libsodium's 64-byte secret key) of a 32-byte seed, derived once for `generate` and `sign`."""
    return crypto_sign_seed_keypair(raw)


class Signer:
    """Signs on behalf of one node. With `enabled=False` every signature is empty (b"")."""

    def __init__(self, keys: KeyPair | None, enabled: bool = True) -> None:
        if enabled and keys is None:
            raise ValueError("signatures are on but no key pair was given")
        self.keys = keys
        self.enabled = enabled

    def sign(self, data: bytes) -> bytes:
        if not self.enabled:
            return b""
        assert self.keys is not None
        return self.keys.sign(data)


def check_signature(public: bytes | None, signature: bytes, data: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature of `data` under the raw public key `public`.

    Never raises: malformed keys or signatures simply give False.
    """
    if not isinstance(public, (bytes, bytearray)) or len(public) != PUBLIC_KEY_LEN:
        return False
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_LEN:
        return False
    try:
        crypto_sign_open(bytes(signature) + bytes(data), bytes(public))
    except (CryptoError, ValueError, TypeError):
        return False
    return True


class SignatureCache:
    """Memoised Ed25519 signature checks: `check(public, signature, data)` gives what `check_signature` gives,
    computed once per distinct (key, signature, data). A pure function of its inputs, so results never change; it
    only removes the N-fold repetition of the same check by N simulated delegates. Pass `cache.check` as the
    machines' `sig_check` (the scenario runner does, given `signature_cache=`; without one, a run keeps a cache
    of its own). At most `limit` entries (then it starts afresh); `limit=0` memoises nothing (every check is
    computed, for comparisons).

    Signatures made in this process are noted as valid when made (`vouch`, by a `NotedKeyPair` whose public key is
    its seed's): Ed25519 verification of a signature made with the matching secret key is true, so `check` answers
    them without computing them. Every answer of the memo is thus a fact established in this process, by a
    verification computed here or by signing here; a triple neither computed nor signed (a forged or altered
    signature, a signature from elsewhere) is computed. `verified` is the same memo restricted to computed
    answers (it computes a triple only vouched for), for a comparison that must not rely on signing."""

    __slots__ = ("_memo", "_vouched", "limit", "calls", "computed", "vouched")

    def __init__(self, limit: int = 200_000) -> None:
        self._memo: dict[tuple[bytes, bytes, bytes], bool] = {}
        self._vouched: set[tuple[bytes, bytes, bytes]] = set()  # memo entries noted by `vouch`, not computed
        self.limit = int(limit)
        self.calls = 0
        self.computed = 0
        self.vouched = 0

    def check(self, public: bytes | None, signature: bytes, data: bytes) -> bool:
        self.calls += 1
        if type(public) is bytes and type(signature) is bytes:  # the usual case: the key as it stands
            ok = self._memo.get((public, signature, data))
            if ok is not None:
                return ok
        if self.limit <= 0 or not isinstance(public, (bytes, bytearray)) or not isinstance(signature, (bytes, bytearray)):
            self.computed += self.limit <= 0
            return check_signature(public, signature, data)
        key = (bytes(public), bytes(signature), data)
        ok = self._memo.get(key)
        if ok is None:
            self.computed += 1
            ok = check_signature(public, signature, data)
            if len(self._memo) >= self.limit:
                self._memo.clear()
            self._memo[key] = ok
        return ok

    def vouch(self, public: bytes, signature: bytes, data: bytes) -> None:
        """Note a signature just made with the secret key of ``public`` over ``data``: valid by construction."""
        if self.limit <= 0:
            return
        key = (bytes(public), bytes(signature), bytes(data))
        if key not in self._memo:
            if len(self._memo) >= self.limit:
                self._memo.clear()
                self._vouched.clear()
            self._memo[key] = True
            self._vouched.add(key)
            self.vouched += 1

    def verified(self, public: bytes | None, signature: bytes, data: bytes) -> bool:
        """What `check_signature` gives, from the memo only when it was computed (never from `vouch`)."""
        if isinstance(public, (bytes, bytearray)) and isinstance(signature, (bytes, bytearray)):
            key = (bytes(public), bytes(signature), data)
            if key in self._vouched:
                self._vouched.discard(key)
                self._memo.pop(key, None)
        return self.check(public, signature, data)

    def clear(self) -> None:
        self._memo.clear()
        self._vouched.clear()
        self.calls = self.computed = self.vouched = 0

    def __len__(self) -> int:
        return len(self._memo)


@dataclass(frozen=True)
class Committee:
    """The delegates in rotation order, their public keys (None when signatures are off) and the observers
    (normal nodes) that delegates send their Decisions to."""

    members: tuple[NodeId, ...]
    keys: Mapping[NodeId, bytes] | None = None
    observers: tuple[NodeId, ...] = ()

    def __init__(
        self,
        members: Sequence[NodeId],
        keys: Mapping[NodeId, bytes] | None = None,
        observers: Sequence[NodeId] = (),
    ) -> None:
        members_t = tuple(members)
        if not members_t:
            raise ValueError("a committee needs at least one member")
        if len(set(members_t)) != len(members_t):
            raise ValueError(f"duplicate committee members: {members_t}")
        if keys is not None:
            missing = [m for m in members_t if m not in keys]
            if missing:
                raise ValueError(f"no public key for {missing}")
            keys = dict(keys)
        object.__setattr__(self, "members", members_t)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "observers", tuple(observers))
        object.__setattr__(self, "_member_set", frozenset(members_t))  # O(1) membership (not a field)

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def majority(self) -> int:
        """Smallest count that is a strict majority of the committee (> N/2)."""
        return self.size // 2 + 1

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._member_set
        except TypeError:  # an unhashable name is nobody
            return False

    def public_key(self, name: NodeId) -> bytes | None:
        if self.keys is None:
            return None
        return self.keys.get(name)

    def context(self, *parts: object) -> tuple[object, ...]:
        """One tuple object per distinct `parts` (compared by equality) for this committee: what machines of this
        committee share can be named by identity (a delegate's checks of a copy that need no round state depend
        on the committee and on `parts`, and are kept on the message under this tuple). Unhashable parts give a
        tuple of their own."""
        contexts = self.__dict__.get("_contexts")
        if contexts is None:
            contexts = {}
            object.__setattr__(self, "_contexts", contexts)
        try:
            return contexts.setdefault(parts, parts)
        except TypeError:
            return parts

    def __getstate__(self) -> dict[str, object]:
        # the fields and the member set; the contexts (they may hold a run's signature check) are made again
        return {k: v for k, v in self.__dict__.items() if k != "_contexts"}


def make_keys(names: Sequence[NodeId], seed: bytes = b"poso-sim") -> dict[NodeId, KeyPair]:
    """Deterministic key pairs for `names`: node n gets KeyPair.generate(seed + b"/" + n)."""
    return {n: KeyPair.generate(seed + b"/" + n.encode()) for n in names}


def make_committee(
    members: Sequence[NodeId],
    observers: Sequence[NodeId] = (),
    *,
    seed: bytes = b"poso-sim",
    signatures: bool = True,
) -> tuple[Committee, dict[NodeId, KeyPair]]:
    """Convenience: a committee with deterministic keys (key pairs are returned even with signatures off)."""
    pairs = make_keys(members, seed)
    keys = {n: kp.public for n, kp in pairs.items()} if signatures else None
    return Committee(members, keys, observers), pairs
