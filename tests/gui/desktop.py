#!/usr/bin/python3
"""The desktop around the app, for the GUI test: a tray host and the window manager's part.

  desktop.py watcher OUT          a StatusNotifierWatcher (the tray host's registry) on the
                                  session bus; each registered item is appended to OUT as JSON
  desktop.py tray-menu REG        the tray item's properties and its whole menu (dbusmenu), JSON
  desktop.py tray-click REG LABEL click the menu entry LABEL, as a tray host does
  desktop.py window NAME          {"mapped", "width", "height"} of the top-level window NAME
                                  (not mapped, size 0, when it has no X window yet)
  desktop.py close NAME           ask the window to close (WM_DELETE_WINDOW, the title bar's x)
  desktop.py resize NAME W H      resize it, as a user dragging its border
  desktop.py drop NAME PATH...    drag these files from a file manager and drop them on the
                                  window (the XDND protocol, as a file manager speaks it)
  desktop.py clipboard            print the text on the CLIPBOARD selection, as a paste gets it
  desktop.py shot NAME OUT        the window's pixels as the X server has them, written to OUT
                                  as a PNG (WebDriver's screenshot waits for a WebKit paint,
                                  which a page that does not change never makes without
                                  accelerated compositing)

Uses /usr/bin/python3 (Debian's gi and Xlib), DBUS_SESSION_BUS_ADDRESS and DISPLAY from the
environment. Every call is bounded (5 s on the bus).
"""
import json
import re
import sys
import time

TIMEOUT_MS = 5000


def bus():
    from gi.repository import Gio
    return Gio.bus_get_sync(Gio.BusType.SESSION)


def watcher(out):
    from gi.repository import Gio, GLib
    xml = """<node><interface name="org.kde.StatusNotifierWatcher">
     <method name="RegisterStatusNotifierItem"><arg type="s" name="service" direction="in"/></method>
     <method name="RegisterStatusNotifierHost"><arg type="s" name="service" direction="in"/></method>
     <property name="RegisteredStatusNotifierItems" type="as" access="read"/>
     <property name="IsStatusNotifierHostRegistered" type="b" access="read"/>
     <property name="ProtocolVersion" type="i" access="read"/>
     <signal name="StatusNotifierItemRegistered"><arg type="s"/></signal>
    </interface></node>"""
    items = []

    def on_call(conn, sender, path, iface, method, params, inv):
        if method == "RegisterStatusNotifierItem":
            arg = params.unpack()[0]
            # libayatana-appindicator passes its object path; others pass a bus name.
            svc, obj = (sender, arg) if arg.startswith("/") else (arg, "/StatusNotifierItem")
            items.append(svc + obj)
            with open(out, "a") as f:
                f.write(json.dumps({"service": svc, "path": obj}) + "\n")
            conn.emit_signal(None, "/StatusNotifierWatcher", "org.kde.StatusNotifierWatcher",
                             "StatusNotifierItemRegistered", GLib.Variant("(s)", (svc + obj,)))
        inv.return_value(None)

    def on_get(conn, sender, path, iface, prop):
        return {"RegisteredStatusNotifierItems": GLib.Variant("as", items),
                "IsStatusNotifierHostRegistered": GLib.Variant("b", True),
                "ProtocolVersion": GLib.Variant("i", 0)}[prop]

    def on_bus(conn, name):
        conn.register_object("/StatusNotifierWatcher",
                             Gio.DBusNodeInfo.new_for_xml(xml).interfaces[0], on_call, on_get, None)

    Gio.bus_own_name(Gio.BusType.SESSION, "org.kde.StatusNotifierWatcher",
                     Gio.BusNameOwnerFlags.NONE, on_bus, None,
                     lambda *a: sys.exit("could not own org.kde.StatusNotifierWatcher"))
    GLib.MainLoop().run()


def registered(reg):
    """The last item registered (the app re-registers when it restarts)."""
    with open(reg) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    if not lines:
        sys.exit("no tray item registered")
    return lines[-1]["service"], lines[-1]["path"]


def prop(b, svc, path, iface, name):
    from gi.repository import GLib
    return b.call_sync(svc, path, "org.freedesktop.DBus.Properties", "Get",
                       GLib.Variant("(ss)", (iface, name)), GLib.VariantType("(v)"), 0,
                       TIMEOUT_MS, None).unpack()[0]


def label(text):
    # dbusmenu labels carry GTK mnemonics: "_" marks one, "__" is a literal underscore.
    return re.sub(r"_(.)", r"\1", text or "")


def layout(b, svc, menu):
    from gi.repository import GLib
    _, root = b.call_sync(svc, menu, "com.canonical.dbusmenu", "GetLayout",
                          GLib.Variant("(iias)", (0, -1, [])),
                          GLib.VariantType("(u(ia{sv}av))"), 0, TIMEOUT_MS, None).unpack()

    def node(n):
        id_, props, children = n
        return {"id": id_, "label": label(props.get("label")),
                "enabled": props.get("enabled", True), "visible": props.get("visible", True),
                "type": props.get("type", "standard"),
                "children": [node(c) for c in children]}
    return node(root)


def tray_menu(reg):
    b = bus()
    svc, item = registered(reg)
    iface = "org.kde.StatusNotifierItem"
    menu = prop(b, svc, item, iface, "Menu")
    print(json.dumps({"id": prop(b, svc, item, iface, "Id"),
                      "status": prop(b, svc, item, iface, "Status"),
                      "icon": prop(b, svc, item, iface, "IconName"),
                      "pixmaps": [[w, h] for w, h, _ in prop(b, svc, item, iface, "IconPixmap")],
                      "menu": layout(b, svc, menu)}))


def tray_click(reg, wanted):
    from gi.repository import GLib
    b = bus()
    svc, item = registered(reg)
    menu = prop(b, svc, item, "org.kde.StatusNotifierItem", "Menu")

    def find(n):
        if n["label"] == wanted:
            return n
        for c in n["children"]:
            hit = find(c)
            if hit:
                return hit
        return None
    hit = find(layout(b, svc, menu))
    if not hit:
        sys.exit(f"no tray menu entry {wanted!r}")
    b.call_sync(svc, menu, "com.canonical.dbusmenu", "Event",
                GLib.Variant("(isvu)", (hit["id"], "clicked", GLib.Variant("s", ""),
                                        int(time.time()))),
                None, 0, TIMEOUT_MS, None)


def x_window(name, must=True):
    from Xlib import X, display
    d = display.Display()
    found = []

    def walk(w):
        try:
            if w.get_wm_name() == name and w.get_wm_class():
                found.append(w)
            for c in w.query_tree().children:
                walk(c)
        except Exception:
            pass
    walk(d.screen().root)
    if not found:
        if must:
            sys.exit(f"no window named {name!r}")
        return d, None, X
    return d, found[0], X


def window(name):
    d, w, X = x_window(name, must=False)
    if w is None:  # never shown yet: GTK creates the X window when it first maps it
        print(json.dumps({"mapped": False, "width": 0, "height": 0}))
        return
    a = w.get_attributes()
    g = w.get_geometry()
    print(json.dumps({"mapped": a.map_state == X.IsViewable, "width": g.width,
                      "height": g.height}))


def close(name):
    from Xlib import protocol
    d, w, X = x_window(name)
    wm_protocols = d.intern_atom("WM_PROTOCOLS")
    delete = d.intern_atom("WM_DELETE_WINDOW")
    ev = protocol.event.ClientMessage(window=w, client_type=wm_protocols,
                                      data=(32, [delete, X.CurrentTime, 0, 0, 0]))
    w.send_event(ev, event_mask=X.NoEventMask)
    d.flush()


def resize(name, width, height):
    d, w, X = x_window(name)
    w.configure(width=int(width), height=int(height))
    d.flush()
    d.sync()


def drop(name, *paths):
    """An XDND source: offers text/uri-list, drops at the window's centre, serves the data."""
    from urllib.parse import quote
    from Xlib import X, Xatom, protocol
    d, target, _ = x_window(name)
    atom = d.intern_atom
    aware = target.get_full_property(atom("XdndAware"), Xatom.ATOM)
    if not aware:
        sys.exit(f"window {name!r} does not accept drops (no XdndAware)")
    version = min(5, aware.value[0])
    root = d.screen().root
    source = root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
    selection, uri_list = atom("XdndSelection"), atom("text/uri-list")
    source.set_selection_owner(selection, X.CurrentTime)
    payload = "".join("file://" + quote(p) + "\r\n" for p in paths).encode()
    geo = target.get_geometry()
    pos = target.translate_coords(root, geo.width // 2, geo.height // 2)
    x, y = pos.x, pos.y

    def send(kind, data):
        ev = protocol.event.ClientMessage(window=target, client_type=atom(kind),
                                          data=(32, [source.id] + data))
        target.send_event(ev, event_mask=X.NoEventMask)
        d.flush()

    send("XdndEnter", [version << 24, uri_list, 0, 0])
    send("XdndPosition", [0, (x << 16) | y, X.CurrentTime, atom("XdndActionCopy")])
    deadline = time.time() + 10
    dropped = False
    while time.time() < deadline:
        if not d.pending_events():
            time.sleep(0.02)
            continue
        ev = d.next_event()
        if ev.type == X.ClientMessage and ev.client_type == atom("XdndStatus"):
            if not dropped:
                if not ev.data[1][1] & 1:
                    sys.exit("the window refused the drop (XdndStatus without accept)")
                send("XdndDrop", [0, X.CurrentTime, 0, 0])
                dropped = True
        elif ev.type == X.SelectionRequest:
            req = ev.requestor
            req.change_property(ev.property, ev.target, 8, payload)
            notify = protocol.event.SelectionNotify(time=ev.time, requestor=req,
                                                    selection=ev.selection, target=ev.target,
                                                    property=ev.property)
            req.send_event(notify)
            d.flush()
        elif ev.type == X.ClientMessage and ev.client_type == atom("XdndFinished"):
            return
    sys.exit("the drop did not finish within 10 s")


def shot(name, out):
    import struct
    import zlib
    d, w, X = x_window(name)
    g = w.get_geometry()
    img = w.get_image(0, 0, g.width, g.height, X.ZPixmap, 0xFFFFFFFF)
    if g.depth not in (24, 32):
        sys.exit(f"window {name!r}: depth {g.depth}, not 24 or 32")
    raw = img.data if isinstance(img.data, bytes) else bytes(img.data)
    stride = len(raw) // g.height
    rows = bytearray()
    for y in range(g.height):
        line = raw[y * stride:y * stride + 4 * g.width]
        rgb = bytearray(3 * g.width)  # the server's pixels are B, G, R, X
        rgb[0::3], rgb[1::3], rgb[2::3] = line[2::4], line[1::4], line[0::4]
        rows += b"\0" + rgb

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", g.width, g.height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(bytes(rows), 6)) + chunk(b"IEND", b""))
    with open(out, "wb") as f:
        f.write(png)


def clipboard():
    """Asks the CLIPBOARD's owner for UTF8_STRING, as a program pasting does (no INCR: the
    texts copied here are far below the X request size)."""
    from Xlib import X, display
    d = display.Display()
    atom = d.intern_atom
    me = d.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
    me.convert_selection(atom("CLIPBOARD"), atom("UTF8_STRING"), atom("UNDERPASS_PASTE"),
                         X.CurrentTime)
    d.flush()
    deadline = time.time() + 5
    while time.time() < deadline:
        if not d.pending_events():
            time.sleep(0.02)
            continue
        ev = d.next_event()
        if ev.type == X.SelectionNotify:
            if ev.property == X.NONE:
                sys.exit("nothing on the clipboard (or not as text)")
            prop = me.get_full_property(atom("UNDERPASS_PASTE"), X.AnyPropertyType)
            sys.stdout.write(prop.value.decode() if isinstance(prop.value, bytes) else str(prop.value))
            return
    sys.exit("the clipboard's owner did not answer within 5 s")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"watcher": watcher, "tray-menu": tray_menu, "tray-click": tray_click,
     "window": window, "close": close, "resize": resize, "drop": drop,
     "clipboard": clipboard, "shot": shot}[cmd](*args)
