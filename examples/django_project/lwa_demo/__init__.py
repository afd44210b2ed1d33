"""A minimal Django project protected by Login with Amazon access tokens."""
