"""Sign and verify compact JWS tokens; the only place JOSE details live."""

from keyturn.tokens.keyset import KeySet
from keyturn.tokens.signer import TokenSigner, issue_claims
from keyturn.tokens.verify import verify_token

__all__ = ["KeySet", "TokenSigner", "issue_claims", "verify_token"]
