"""tokencore: the token core shared by the issuer, refresher, authorizer and revoker.

No Lambda types live here; handlers in functions/ parse events and call into this package.
"""

__version__ = "0.1.0"
