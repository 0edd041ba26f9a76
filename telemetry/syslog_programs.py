"""Which parser reads a syslog message, by the app name in its header: the shipped defaults.

A leaf module: the settings (``parse.syslog_programs`` starts from this map) and the parser (which
falls back to it) both read it, and neither may import the other's package for it.
"""

from __future__ import annotations

#: App name (shell pattern, tried in order) -> the type that parses its message.
DEFAULT_PROGRAMS: dict[str, str] = {
    "proxy-server": "swift", "object-*": "swift", "container-*": "swift", "account-*": "swift",
    "swift*": "swift", "haproxy": "haproxy", "keepalived*": "keepalived", "Keepalived*": "keepalived",
    "pacemaker*": "pacemaker", "corosync": "pacemaker", "crmd": "pacemaker", "cib": "pacemaker",
    "stonith*": "pacemaker", "attrd": "pacemaker", "lrmd": "pacemaker", "pengine": "pacemaker",
    "ceph-*": "ceph", "memcached": "memcached", "nginx": "nginx", "apache2": "apache-error",
    "httpd": "apache-error", "rabbitmq*": "rabbitmq", "mysqld": "mariadb", "mariadbd": "mariadb",
    "libvirtd": "libvirt", "ovs-vswitchd": "ovs", "ovsdb-server": "ovs",
    "nova-*": "openstack", "neutron-*": "openstack", "glance-*": "openstack", "keystone*": "openstack",
    "cinder-*": "openstack", "heat-*": "openstack", "ceilometer-*": "openstack", "aodh-*": "openstack",
    "placement-*": "openstack", "octavia-*": "openstack", "manila-*": "openstack", "ironic-*": "openstack",
    "designate-*": "openstack", "barbican-*": "openstack", "magnum-*": "openstack",
}
