"""Every error keyturn raises, each with a stable ``code`` that scripts and HTTP clients match on.

Tree::

    KeyturnError
    ├── ConfigError                 config_invalid
    │   └── MasterKeyError          master_key_invalid
    ├── InvalidInputError           invalid_input
    │   ├── InvalidKeyError         key_invalid
    │   │   └── WeakKeyError        key_weak
    │   ├── UnsupportedAlgorithmError  alg_unsupported
    │   ├── KeyBackendUnsupportedError key_backend_unsupported (import into a token, alg)
    │   ├── TokenLifetimeError      token_lifetime_exceeded
    │   └── ExportTamperedError     export_tampered
    ├── NotFoundError               not_found
    │   ├── TenantNotFoundError     tenant_not_found
    │   ├── KeyNotFoundError        key_not_found
    │   ├── ApiKeyNotFoundError     api_key_not_found
    │   ├── ClientNotFoundError     oauth_client_not_found
    │   └── SessionNotFoundError    session_not_found
    ├── ConflictError               conflict
    │   ├── TenantExistsError       tenant_exists
    │   ├── IssuerChangeError       issuer_change_refused
    │   ├── ConcurrentChangeError   concurrent_change
    │   ├── InvalidTransitionError  invalid_transition
    │   ├── ClientRevokedError      oauth_client_revoked
    │   └── KeyCapError             key_cap_reached
    ├── UnsafePolicyError           policy_unsafe
    ├── StoreUnavailableError       store_unavailable
    ├── StoreError                  store_error
    ├── KeyBackendError             key_backend_failed   (nothing changed)
    │   ├── TokenUnavailableError   token_unavailable    (module, token absent, session lost)
    │   ├── TokenLoginError         token_login_failed   (wrong or missing PIN, PIN locked)
    │   └── KeyObjectMissingError   key_object_missing   (the key's object is not in the token)
    ├── CacheBusyError              cache_busy
    ├── DrillError                  drill_failed_to_run
    ├── AuthError                   unauthenticated
    │   └── ForbiddenError          forbidden
    ├── OAuthError                  oauth_error          (token endpoint; code = RFC error)
    │   ├── InvalidRequestError     invalid_request      (400)
    │   ├── InvalidClientError      invalid_client       (401)
    │   ├── InvalidGrantError       invalid_grant        (400)
    │   ├── UnauthorizedClientError unauthorized_client  (400)
    │   ├── UnsupportedGrantTypeError  unsupported_grant_type  (400)
    │   ├── InvalidScopeError       invalid_scope        (400)
    │   └── UnsupportedTokenTypeError  unsupported_token_type  (400)
    └── TokenError                  token_invalid        (action: reject)
        ├── MalformedTokenError     token_malformed
        │   └── TokenTooLargeError  token_too_large
        ├── AlgorithmNotAllowedError  alg_not_allowed
        ├── UnsupportedHeaderError  header_unsupported   (crit, b64)
        ├── KeyLookupError          key_lookup_failed    (action: try_refresh)
        │   ├── UnknownKidError     unknown_kid
        │   └── RevokedKidError     revoked_kid
        ├── BadSignatureError       bad_signature
        ├── ExpiredTokenError       expired              (action: refresh)
        ├── NotYetValidError        not_yet_valid
        ├── ClaimError              claim_invalid
        │   ├── MissingClaimError   claim_missing
        │   ├── IssuerMismatchError issuer_mismatch
        │   └── AudienceMismatchError audience_mismatch
        └── JWKSUnavailableError    jwks_unavailable     (action: retry)
            ├── DiscoveryError      discovery_failed
            ├── ResponseTooLargeError  response_too_large
            └── FeedError           revocation_feed_failed
                └── FeedTooLargeError  revocation_feed_too_large

``action`` tells a verifying caller what to do: ``try_refresh`` (get a new token; the key is
gone or unknown), ``refresh`` (the token expired), ``retry`` (our side failed, not the token),
``reject`` (the token is bad).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

Action = Literal["reject", "try_refresh", "refresh", "retry"]


class KeyturnError(Exception):
    """Root of every keyturn error; ``code`` is stable, ``detail`` is for people."""

    code: ClassVar[str] = "keyturn_error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def __str__(self) -> str:
        return self.detail


class ConfigError(KeyturnError):
    """Settings are missing or inconsistent."""

    code = "config_invalid"


class MasterKeyError(ConfigError):
    """The master key is missing, malformed, or not the one the data was sealed with."""

    code = "master_key_invalid"


class InvalidInputError(KeyturnError):
    """The caller sent something keyturn cannot accept."""

    code = "invalid_input"


class InvalidKeyError(InvalidInputError):
    """Key material is malformed, public-only, encrypted with another password, or mismatched."""

    code = "key_invalid"


class WeakKeyError(InvalidKeyError):
    """Key material is too weak for the algorithm (e.g. RSA under 2048 bits)."""

    code = "key_weak"


class UnsupportedAlgorithmError(InvalidInputError):
    """An algorithm keyturn does not sign or verify with."""

    code = "alg_unsupported"


class ExportTamperedError(InvalidInputError):
    """A ring export failed its integrity check: changed, truncated, or not keyturn's."""

    code = "export_tampered"


class NotFoundError(KeyturnError):
    """Something named does not exist."""

    code = "not_found"


class TenantNotFoundError(NotFoundError):
    code = "tenant_not_found"


class KeyNotFoundError(NotFoundError):
    code = "key_not_found"


class ApiKeyNotFoundError(NotFoundError):
    """No API key with that id (the management API's credentials, not signing keys)."""

    code = "api_key_not_found"


class ClientNotFoundError(NotFoundError):
    """No OAuth client with that id in this tenant."""

    code = "oauth_client_not_found"


class SessionNotFoundError(NotFoundError):
    """No session with that id in this tenant."""

    code = "session_not_found"


class ConflictError(KeyturnError):
    """The request conflicts with the current state."""

    code = "conflict"


class TenantExistsError(ConflictError):
    code = "tenant_exists"


class IssuerChangeError(ConflictError):
    """Changing a tenant's issuer breaks its live tokens (they carry the old ``iss``): refused
    unless forced."""

    code = "issuer_change_refused"


class ConcurrentChangeError(ConflictError):
    """Another process changed the key ring first; nothing was changed by this call."""

    code = "concurrent_change"


class InvalidTransitionError(ConflictError):
    """The key is not in a state that allows the requested transition."""

    code = "invalid_transition"


class ClientRevokedError(ConflictError):
    """The OAuth client is revoked: no new sessions, no new secret."""

    code = "oauth_client_revoked"


class KeyCapError(ConflictError):
    """A change would publish more keys than verifiers accept; ``published`` and ``cap`` say."""

    code = "key_cap_reached"

    def __init__(self, detail: str, *, published: int, cap: int) -> None:
        super().__init__(detail, published=published, cap=cap)
        self.published = published
        self.cap = cap


class UnsafePolicyError(KeyturnError):
    """A policy breaks a timing rule; the message names the rule and the numbers."""

    code = "policy_unsafe"

    def __init__(self, detail: str, violations: list[str] | None = None) -> None:
        super().__init__(detail, violations=violations or [])
        self.violations = violations or []


class TokenLifetimeError(InvalidInputError):
    """A token was asked to live longer than the tenant's policy allows."""

    code = "token_lifetime_exceeded"


class StoreUnavailableError(KeyturnError):
    """The database cannot be reached; nothing was changed."""

    code = "store_unavailable"


class KeyBackendUnsupportedError(InvalidInputError):
    """The tenant's key backend cannot do this (import into a token, an algorithm it lacks)."""

    code = "key_backend_unsupported"


class KeyBackendError(KeyturnError):
    """The key backend (a PKCS#11 token, a KMS) failed; no key state was changed."""

    code = "key_backend_failed"


class TokenUnavailableError(KeyBackendError):
    """The PKCS#11 module cannot be loaded, the token is absent, or its session was lost."""

    code = "token_unavailable"


class TokenLoginError(KeyBackendError):
    """The token refused the PIN (wrong, locked, expired) or no PIN source is configured."""

    code = "token_login_failed"


class KeyObjectMissingError(KeyBackendError):
    """A key the ring holds has no private object in its backend (deleted outside keyturn)."""

    code = "key_object_missing"


class CacheBusyError(KeyturnError):
    """Too many document-cache misses are waiting for the store; try again shortly."""

    code = "cache_busy"


class StoreError(KeyturnError):
    """The database refused a statement (not unavailable: a bug or a constraint). Described by
    the statement's kind, never its values."""

    code = "store_error"


class DrillError(KeyturnError):
    """``keyturn drill`` could not run (not: it ran and failed; that is a report)."""

    code = "drill_failed_to_run"


class OAuthError(KeyturnError):
    """An error of the token or revocation endpoint (RFC 6749 section 5.2, RFC 7009):
    ``code`` is the RFC's ``error`` value, ``status`` its HTTP status."""

    code = "oauth_error"
    status: ClassVar[int] = 400


class InvalidRequestError(OAuthError):
    code = "invalid_request"


class InvalidClientError(OAuthError):
    code = "invalid_client"
    status = 401


class InvalidGrantError(OAuthError):
    code = "invalid_grant"


class UnauthorizedClientError(OAuthError):
    code = "unauthorized_client"


class UnsupportedGrantTypeError(OAuthError):
    code = "unsupported_grant_type"


class InvalidScopeError(OAuthError):
    code = "invalid_scope"


class UnsupportedTokenTypeError(OAuthError):
    code = "unsupported_token_type"


class AuthError(KeyturnError):
    """Missing or invalid credentials."""

    code = "unauthenticated"


class ForbiddenError(AuthError):
    """Valid credentials without the right for this action."""

    code = "forbidden"


class TokenError(KeyturnError):
    """A token failed verification; ``action`` says what the caller should do."""

    code = "token_invalid"
    action: ClassVar[Action] = "reject"


class MalformedTokenError(TokenError):
    code = "token_malformed"


class TokenTooLargeError(MalformedTokenError):
    code = "token_too_large"


class AlgorithmNotAllowedError(TokenError):
    code = "alg_not_allowed"


class UnsupportedHeaderError(TokenError):
    code = "header_unsupported"


class KeyLookupError(TokenError):
    """No usable key for the token's kid: get a new token, the issuer rotated or revoked."""

    code = "key_lookup_failed"
    action = "try_refresh"


class UnknownKidError(KeyLookupError):
    code = "unknown_kid"


class RevokedKidError(KeyLookupError):
    code = "revoked_kid"


class BadSignatureError(TokenError):
    code = "bad_signature"


class ExpiredTokenError(TokenError):
    code = "expired"
    action = "refresh"


class NotYetValidError(TokenError):
    code = "not_yet_valid"


class ClaimError(TokenError):
    code = "claim_invalid"


class MissingClaimError(ClaimError):
    code = "claim_missing"


class IssuerMismatchError(ClaimError):
    code = "issuer_mismatch"


class AudienceMismatchError(ClaimError):
    code = "audience_mismatch"


class JWKSUnavailableError(TokenError):
    """The key set could not be fetched and no usable cached copy remains."""

    code = "jwks_unavailable"
    action = "retry"


class DiscoveryError(JWKSUnavailableError):
    """The issuer's discovery document is unusable (unreachable, malformed or wrong issuer)."""

    code = "discovery_failed"


class ResponseTooLargeError(JWKSUnavailableError):
    """A response over ``HTTPOptions.max_response_bytes``: not read further."""

    code = "response_too_large"


class FeedError(JWKSUnavailableError):
    """The revocation feed could not be read (the verifier keeps working; it reconnects)."""

    code = "revocation_feed_failed"


class FeedTooLargeError(FeedError):
    """A feed event or document is over the size cap: revocations would stop arriving.

    Never silent: logged at error level, counted (``feed_too_large``) and reported through
    ``on_event``, because a verifier that quietly stops hearing revocations keeps accepting
    tokens of a revoked key.
    """

    code = "revocation_feed_too_large"
