"""The one DynamoDB table's layout, shared by the session, user and rate-limit stores."""
