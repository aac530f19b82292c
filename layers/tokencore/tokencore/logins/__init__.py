"""The login's storage: one read before the password check, one write after it.

Importing this package never imports boto3.
"""

from tokencore.logins.base import LoginStore, login_store_for
from tokencore.logins.composed import ComposedLoginStore
from tokencore.logins.dynamodb import DynamoDBLoginStore

__all__ = ["ComposedLoginStore", "DynamoDBLoginStore", "LoginStore", "login_store_for"]
