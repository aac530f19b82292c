"""Operations above keys/ and tokens/: key rotation and revocation (``rotation``: the key sets
in Secrets Manager; ``kmsrotation``: the KMS signing key) and publishing the public JWKS
(``publishing``). A rotation probes each new key by minting and verifying a token with it, so
this package may use both keys/ and tokens/, and neither of them imports it."""
