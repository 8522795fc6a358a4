package openstacktest

// The servers' files, written into the Server's directory.
const (
	// keystoneConf: %s the directory.
	// The fewest bcrypt rounds keystone allows: every authentication
	// hashes the password, and a test authenticates often.
	keystoneConf = `[DEFAULT]
use_stderr = true
[identity]
password_hash_rounds = 4
[database]
connection = sqlite:///%[1]s/keystone.db?timeout=60
[token]
provider = fernet
[fernet_tokens]
key_repository = %[1]s/fernet-keys
[fernet_receipts]
key_repository = %[1]s/fernet-receipts
[credential]
key_repository = %[1]s/credential-keys
`

	// keystoneUWSGI: %d the port.
	keystoneUWSGI = `[uwsgi]
plugins = python3
http-socket = 127.0.0.1:%d
wsgi-file = /usr/bin/keystone-wsgi-public
master = true
processes = 1
threads = 1
die-on-term = true
no-orphans = true
need-app = true
buffer-size = 65535
add-header = Connection: close
`

	// glanceConf: %[1]d the port, %[2]s the directory, %[3]s Keystone's
	// URL, %[4]s the admin's password.
	glanceConf = `[DEFAULT]
bind_host = 127.0.0.1
bind_port = %[1]d
workers = 1
use_stderr = true
[database]
connection = sqlite:///%[2]s/glance.db?timeout=60
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = %[2]s/images/
[paste_deploy]
flavor = keystone
config_file = %[2]s/glance-api-paste.ini
[keystone_authtoken]
www_authenticate_uri = %[3]s
auth_url = %[3]s
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = admin
username = admin
password = %[4]s
[oslo_concurrency]
lock_path = %[2]s/lock
`

	// glancePaste is the keystone flavor of Debian's glance-api-paste.ini.
	glancePaste = `[pipeline:glance-api-keystone]
pipeline = versionnegotiation authtoken context rootapp

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true
`

	// cloudsYAML: %[1]s the cloud's name, %[2]s Keystone's URL, %[3]s the
	// password.
	cloudsYAML = `clouds:
  %[1]s:
    auth:
      auth_url: %[2]s
      username: admin
      password: %[3]s
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
`

	// sqliteWAL puts a sqlite database (argv[1]) in WAL mode, which
	// lasts: readers no longer block the writer.
	sqliteWAL = `import sqlite3, sys
sqlite3.connect(sys.argv[1]).execute("pragma journal_mode=wal").fetchone()
`
)
