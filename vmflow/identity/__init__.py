"""Identity: a Keystone v3 subset built into vmflow.

One domain (``default``, named ``Default``), projects, users with hashed
passwords, the roles admin, member and reader (admin implies member, member
implies reader, as Keystone's default implied roles), role assignments of a
user on a project, and tokens.

* ``passwords``: the password hash (scrypt with a salt per user).
* ``store``: projects, users, roles and assignments in the database.
* ``tokens``: issuing, validating and revoking tokens, and the token body.
* ``catalog``: the service catalog a token carries.
* ``bootstrap``: the admin and demo projects and users of a new cloud.

The HTTP face is ``webapp/identity`` (``/identity/v3``); the API's middleware
(``webapp/api/middleware.py``) validates the ``X-Auth-Token`` of every compute
and image request through ``tokens.validate``.
"""

DEFAULT_DOMAIN_ID = "default"
DEFAULT_DOMAIN_NAME = "Default"
DEFAULT_DOMAIN = {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}
REGION = "RegionOne"
