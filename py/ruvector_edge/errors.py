"""Every exception the package raises on purpose, in one place.

Callers on a receive path catch `RejectedInput` to drop a frame without caring
why; tests and metrics look at the concrete class to know *why* it was dropped.
"""


class EdgeError(Exception):
    """Base class of all ruvector-edge errors."""


class RejectedInput(EdgeError):
    """Input from the outside was refused; no state was changed."""


class CanonicalizationError(RejectedInput):
    """A value has no RFC 8785 canonical form (NaN, lone surrogate, unsupported type...)."""


class MalformedMessage(RejectedInput):
    """Bytes are not a well-formed object of the expected kind (shape, types, encoding)."""


class OversizedMessage(RejectedInput):
    """A frame or field is larger than the configured limit."""


class WrongSwarm(RejectedInput):
    """The object was made for a different swarm."""


class WrongType(RejectedInput):
    """The object's `type` is not the one expected here (domain separation)."""


class Misaddressed(RejectedInput):
    """A direct message addressed to another agent."""


class StaleTimestamp(RejectedInput):
    """The timestamp is older than the accepted past window."""


class FutureTimestamp(RejectedInput):
    """The timestamp is further ahead than the allowed clock skew."""


class UnknownSender(RejectedInput):
    """The sender is not in the member registry."""


class BadSignature(RejectedInput):
    """The Ed25519 signature does not verify under the registry's key."""


class ReplayDetected(RejectedInput):
    """The nonce or counter was already seen, or the counter fell behind the window."""


class DecryptionFailed(RejectedInput):
    """AES-GCM authentication failed (wrong key, tampered ciphertext, tag or header)."""


class PayloadHashMismatch(RejectedInput):
    """The decrypted payload does not match the hash the sender signed."""


class RegistrationRejected(RejectedInput):
    """A member registration failed validation (bad key, no capabilities, odd joined_at...)."""


class KeyConflict(RegistrationRejected):
    """An agent id is already registered under a different Ed25519 key."""


class SessionKeyError(EdgeError):
    """A session key could not be derived (unknown peer, low-order X25519 key)."""


class IdentityFileError(EdgeError):
    """An identity file is missing, unreadable, malformed or has unsafe permissions."""


class ProviderUnavailable(EdgeError):
    """The runtime lacks what a provider needs (e.g. PyNaCl not installed natively)."""


class TransportError(EdgeError):
    """A transport could not carry a frame."""


class SendQueueFull(TransportError):
    """The transport is disconnected and its bounded send queue is full: the frame was not accepted."""


class TransportClosed(TransportError):
    """The transport was stopped; nothing more can be sent."""


# Learning engine: also ValueErrors, so plain callers (a Pyodide UI) can catch them without importing these.

class InvalidLearningInput(RejectedInput, ValueError):
    """A state, action, reward or transition was refused; the learner is unchanged."""


class InvalidActionList(InvalidLearningInput):
    """An action list is empty, has duplicates, or is not a sequence of action names."""


class UnknownAction(InvalidLearningInput):
    """The action is not a valid action name, or not in the learner's fixed action set."""


class InvalidReward(InvalidLearningInput):
    """The reward is not a finite real number, or is outside the range the algorithm assumes."""


class MissingNextAction(InvalidLearningInput):
    """An on-policy algorithm needs the next action it will actually take, and none was given."""


class EpisodeTooLong(InvalidLearningInput):
    """An episodic learner's buffer hit its bound; the step was not recorded."""


class InvalidPattern(MalformedMessage, ValueError):
    """A pattern's fields are out of range or of the wrong type."""


class InvalidLearnerConfig(EdgeError, ValueError):
    """A hyper-parameter is out of range, unknown, or the algorithm name is not registered."""


# Tensor compression and artifacts.

class ChecksumMismatch(MalformedMessage):
    """A compressed container's CRC32 does not match its bytes (corrupted or tampered in transit)."""


class InvalidTensor(RejectedInput, ValueError):
    """A tensor cannot be encoded at the requested level (not real numbers, non-finite values for a lossy level...)."""


class InvalidCodecConfig(EdgeError, ValueError):
    """A codec setting (level, block size, limit, error budget) is out of range."""


class InvalidCid(MalformedMessage):
    """Text is not a CIDv1 this store understands (base32 multibase, sha2-256, raw or json codec)."""


class ChunkHashMismatch(RejectedInput):
    """A block's bytes do not hash to the CID they were offered or stored under; the block was refused or dropped."""


class MissingChunks(EdgeError):
    """An artifact cannot be assembled yet: these blocks are not in the store (fetch them from a peer)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"{len(missing)} block(s) missing, first {missing[0] if missing else None}")
        self.missing = missing


# Tasks: WebAssembly modules run under budgets, with signed claims and receipts.

class ModuleRejected(RejectedInput):
    """A task module is not valid WebAssembly, imports anything, or lacks the task ABI's exports."""


class LeaseHeld(RejectedInput):
    """A claim was refused: another claimant holds an unexpired lease on the task."""

    def __init__(self, task_id: str, holder: str, expires_at: int) -> None:
        super().__init__(f"task {task_id!r} is leased to {holder!r} until {expires_at}")
        self.task_id = task_id
        self.holder = holder
        self.expires_at = expires_at


class ReceiptMismatch(RejectedInput):
    """A task receipt does not bind to the envelope or to the artifacts it names."""


class TaskDeadlinePassed(RejectedInput):
    """A task was submitted, claimed or executed after its deadline."""


# GUN: swarm state kept in a public graph.

class UnsignedValue(MalformedMessage):
    """A value in the GUN graph where swarm state belongs carries no signature (anyone can write to GUN)."""


# Tasks and artifacts over the swarm.

class ArtifactUnavailable(EdgeError):
    """An artifact could not be fetched: some block has no member left to ask, or the fetch ran out of time."""


class UnsolicitedReply(RejectedInput):
    """A block or spot-check reply answers no request this member has outstanding to that sender."""


class UnknownTask(RejectedInput):
    """A claim, assignment, result or spot-check names a task this member has no envelope for."""


# The web app.

class InvalidPageAction(RejectedInput, ValueError):
    """A page action (browser_app.act) with an unknown name or arguments of the wrong shape or type."""


class ModelIntegrityError(ProviderUnavailable):
    """A model file's sha256 is not the pinned one: it is never run, whatever it contains."""


# Admission: certificates, invites, revocations and swarm-key epochs (issue 15).

class AdmissionRefused(RejectedInput):
    """An admitted swarm refused an identity, an invite or a key; the concrete class says why."""


class MissingCertificate(AdmissionRefused):
    """The identity holds no membership certificate of this swarm (a sybil, or an open-mode client)."""


class InvalidCertificate(AdmissionRefused):
    """A certificate is not the admin's (issuer not bound to the swarm id, bad signature) or not for these keys."""


class ExpiredCertificate(AdmissionRefused):
    """A certificate is past its expiry, or not yet valid."""


class RevokedMember(AdmissionRefused):
    """The admin revoked this member's certificate (or its key)."""


class InvalidInvite(AdmissionRefused):
    """An invite is not signed by the swarm's admin, is for another swarm, or asks for roles it does not allow."""


class ExpiredInvite(AdmissionRefused):
    """An invite is past its expiry."""


class InviteExhausted(AdmissionRefused):
    """An invite was already used as many times as it allows (a replayed or shared link), or withdrawn."""


class UnknownEpoch(AdmissionRefused):
    """An envelope's swarm-key epoch is not the current one nor the previous one within its grace window."""


class NotAdmitted(EdgeError):
    """This member has no swarm key yet: it has not traded its invite for a certificate."""


class NoAdminOnline(AdmissionRefused):
    """An invite reached a relay where no admin of its swarm is connected to trade it; try again later."""


# The ANN index cache beside a memory store (issue 13).

class IndexFileRejected(RejectedInput):
    """An index file is not authentic (MAC under the store's key), not well formed, or not of this memory:
    it is never loaded, and the index is rebuilt from the store."""


class MembershipRefused(NotAdmitted):
    """The relay refused this agent's hello in an admitted swarm (invite spent, expired or forged, certificate
    revoked...) or dropped it as removed: the same hello would be refused again, so the agent stops trying."""


# Poisoning resistance (issue 14).

class ForeignOrigin(RejectedInput):
    """A peer's pattern state holds entries of origins other than that peer: a member is believed only
    about its own entries, or it could invent origins (or speak for honest ones) past every per-origin bound."""


# Admin state across restarts (issue 15 follow-up).

class AdminStateError(EdgeError):
    """A saved admin state is unreadable, unsafe (readable by others), not signed by this admin, or holds a
    record that does not check out: it is refused, never partly trusted, and the admin does not start."""


# Relays of a federation (issue 16 follow-up).

class InvalidRelayUrl(EdgeError, ValueError):
    """A relay list (an invite's `relays=`, a link's URLs) names no relay, or one a browser cannot open a
    WebSocket to: refused before any link starts, so a bad invite never leaves a page half joined."""


# A native agent's membership across restarts (issue 15 follow-up).

class MemberStateError(EdgeError):
    """A saved membership (certificate, epoch key) is unreadable, unsafe (readable by others), not signed by this
    agent's own key (altered, or another agent's), or does not check out: refused, never partly trusted."""


# The relay's limits (issue 17 follow-up: connections that never send a request).

class InvalidRelayLimits(EdgeError, ValueError):
    """A relay limit is out of range (a deadline that is not a positive finite number of seconds, a cap below
    one): refused when the limits are made, so a relay never starts with a bound that does not bound."""


# The relay's admission state across restarts (issue 15 follow-up).

class GateRecordRejected(RejectedInput):
    """A record in the relay's saved admission state (DATA-DIR/gate.sqlite) does not check out as it did when
    it arrived (malformed, filed under another swarm or agent, not the admin's signature, an epoch key older than
    its swarm's newest): it is refused and logged, it changes nothing, and the other records still load."""

