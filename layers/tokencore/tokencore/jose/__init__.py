"""JOSE, in one place: ``algorithms`` (the registry: one entry per algorithm, every allow-list
derived from it) and ``codec`` (canonical base64url, strict JSON, the kid grammar).

keys/ and tokens/ both build on this package and never on each other. It imports nothing
heavier than ``cryptography``'s primitives (no boto3, no argon2): the authorizer's cold start
loads it. Import the submodules; this file imports nothing, so ``codec`` stays free of
``cryptography``.
"""
