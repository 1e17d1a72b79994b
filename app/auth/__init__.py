"""Users, roles and login (Flask-Login)."""


def init_auth(app):
    pass
