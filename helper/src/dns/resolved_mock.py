'''A stand-in for systemd-resolved's org.freedesktop.resolve1, for the tests in resolved.rs.

A python-dbusmock template (Debian's python3-dbusmock has none for resolved):

    python3 -m dbusmock --session -t helper/src/dns/resolved_mock.py -p '{"links": [1]}'

It knows the links given in "links" (default: 1, loopback). For each one it exports a
/org/freedesktop/resolve1/link/_3N object whose DNS, Domains and DefaultRoute properties follow
the SetLinkDNS, SetLinkDomains, SetLinkDefaultRoute and RevertLink calls, the way resolved's do.
Calls naming a link it does not know fail with org.freedesktop.resolve1.NoSuchLink, as resolved's
do. dbusmock logs every call; the tests read them back with GetCalls.

Test-only control, on a separate interface: org.underpass.MockControl.ForgetLink(i) makes the
mock forget a link (as resolved does when the interface goes away), and LearnLink(i) makes it
know one of the "links" again (as resolved does when netlink tells it about a new one).
'''

import dbus

BUS_NAME = 'org.freedesktop.resolve1'
MAIN_OBJ = '/org/freedesktop/resolve1'
MAIN_IFACE = 'org.freedesktop.resolve1.Manager'
LINK_IFACE = 'org.freedesktop.resolve1.Link'
SYSTEM_BUS = True

# The start of every method snippet below: find the link object, or fail as resolved does.
# dbusmock runs snippets with its own globals (`objects`, `dbus`), not this module's, and with the
# main mock object as `self`, where the known links are kept.
_LINK = '''
import dbus
ifindex = int(args[0])
if ifindex not in self.links:
    raise dbus.exceptions.DBusException(
        'Link %d not known' % ifindex, name='org.freedesktop.resolve1.NoSuchLink')
link = objects['/org/freedesktop/resolve1/link/_3' + '_3'.join(str(ifindex))]
'''

# As resolved: the root domain is accepted only as a routing domain ("~." is sent as (".", true)).
_ROOT_ONLY_AS_ROUTE = '''
for name, route_only in args[1]:
    if not route_only and str(name).strip('.') == '':
        raise dbus.exceptions.DBusException(
            'Root domain is not suitable as search domain',
            name='org.freedesktop.DBus.Error.InvalidArgs')
'''


def _empty_props():
    return {
        'DNS': dbus.Array([], signature='(iay)'),
        'Domains': dbus.Array([], signature='(sb)'),
        'DefaultRoute': dbus.Boolean(False),
    }


def load(mock, parameters):
    mock.links = set(int(i) for i in parameters.get('links', [1]))
    for ifindex in sorted(mock.links):
        # resolved escapes the decimal ifindex as a bus label: "12" -> "_31_32".
        path = MAIN_OBJ + '/link/_3' + '_3'.join(str(ifindex))
        mock.AddObject(path, LINK_IFACE, _empty_props(), [])

    mock.AddMethods(MAIN_IFACE, [
        ('GetLink', 'i', 'o', _LINK + 'ret = dbus.ObjectPath(link.path)'),
        ('SetLinkDNS', 'ia(iay)', '',
         _LINK + "link.Set('%s', 'DNS', dbus.Array(args[1], signature='(iay)'))" % LINK_IFACE),
        ('SetLinkDomains', 'ia(sb)', '',
         _LINK + _ROOT_ONLY_AS_ROUTE
         + "link.Set('%s', 'Domains', dbus.Array(args[1], signature='(sb)'))" % LINK_IFACE),
        ('SetLinkDefaultRoute', 'ib', '',
         _LINK + "link.Set('%s', 'DefaultRoute', dbus.Boolean(args[1]))" % LINK_IFACE),
        ('RevertLink', 'i', '',
         _LINK + "link.Set('%s', 'DNS', dbus.Array([], signature='(iay)'))\n"
                 "link.Set('%s', 'Domains', dbus.Array([], signature='(sb)'))\n"
                 "link.Set('%s', 'DefaultRoute', dbus.Boolean(False))"
         % (LINK_IFACE, LINK_IFACE, LINK_IFACE)),
    ])
    mock.AddMethod('org.underpass.MockControl', 'ForgetLink', 'i', '',
                   'self.links.discard(int(args[0]))')
    mock.AddMethod('org.underpass.MockControl', 'LearnLink', 'i', '',
                   'self.links.add(int(args[0]))')
