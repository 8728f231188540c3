//! The tray icon as a StatusNotifierItem (ksni, over D-Bus): what the tray process shows. It
//! holds only what it draws; clicks go to the process's loop as [`Action`]s.

use tokio::sync::mpsc::UnboundedSender;

use super::{Action, Entries, FASTEST};

/// The icon, as ARGB32 pixmaps (what the StatusNotifierItem spec carries; no file, no theme).
const ICONS: [&[u8]; 2] = [
    include_bytes!("../../icons/32x32.png"),
    include_bytes!("../../icons/128x128.png"),
];

pub struct Icon {
    pub entries: Entries,
    /// The "Connect to" entries: (id after `fastest:`, label).
    pub countries: Vec<(String, String)>,
    pub tunnel_up: bool,
    pixmaps: Vec<ksni::Icon>,
    clicks: UnboundedSender<Action>,
}

impl Icon {
    pub fn new(entries: Entries, clicks: UnboundedSender<Action>) -> Icon {
        let pixmaps = ICONS
            .iter()
            .filter_map(|png| match pixmap(png) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("tray icon not decoded: {e}");
                    None
                }
            })
            .collect();
        Icon {
            entries,
            countries: Vec::new(),
            tunnel_up: false,
            pixmaps,
            clicks,
        }
    }

    fn click(&self, id: &str) {
        if let Some(action) = super::action(id, self.tunnel_up) {
            let _ = self.clicks.send(action);
        }
    }
}

/// A PNG as the spec's pixmap: ARGB32 in network byte order.
fn pixmap(png: &[u8]) -> anyhow::Result<ksni::Icon> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf)?;
    let rgba = &buf[..info.buffer_size()];
    let data = match info.color_type {
        png::ColorType::Rgba => rgba
            .chunks_exact(4)
            .flat_map(|p| [p[3], p[0], p[1], p[2]])
            .collect(),
        png::ColorType::GrayscaleAlpha => rgba
            .chunks_exact(2)
            .flat_map(|p| [p[1], p[0], p[0], p[0]])
            .collect(),
        other => anyhow::bail!("a PNG of color type {other:?}, not RGBA"),
    };
    Ok(ksni::Icon {
        width: info.width as i32,
        height: info.height as i32,
        data,
    })
}

/// A label as dbusmenu shows it: a single `_` marks a mnemonic, so a literal one is doubled.
fn label(text: &str) -> String {
    text.replace('_', "__")
}

fn item(id: &'static str, text: &str, enabled: bool) -> ksni::MenuItem<Icon> {
    ksni::menu::StandardItem {
        label: label(text),
        enabled,
        activate: Box::new(move |icon: &mut Icon| icon.click(id)),
        ..Default::default()
    }
    .into()
}

impl ksni::Tray for Icon {
    fn id(&self) -> String {
        "underpass".into()
    }

    fn title(&self) -> String {
        "Underpass".into()
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::Communications
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        self.pixmaps.clone()
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: "Underpass".into(),
            description: self.entries.state.clone(),
            ..Default::default()
        }
    }

    /// A click on the icon itself shows the window.
    fn activate(&mut self, _x: i32, _y: i32) {
        self.click("show");
    }

    fn menu(&self) -> Vec<ksni::MenuItem<Self>> {
        let e = &self.entries;
        let countries = self
            .countries
            .iter()
            .map(|(id, text)| {
                let id = format!("{FASTEST}{id}");
                ksni::menu::StandardItem {
                    label: label(text),
                    activate: Box::new(move |icon: &mut Icon| icon.click(&id)),
                    ..Default::default()
                }
                .into()
            })
            .collect();
        vec![
            item("state", &e.state, false),
            ksni::MenuItem::Separator,
            item("connect", "Connect", e.connect),
            ksni::menu::SubMenu {
                label: "Connect to".into(),
                enabled: e.countries,
                submenu: countries,
                ..Default::default()
            }
            .into(),
            item("disconnect", "Disconnect", e.disconnect),
            item("show", "Show Underpass", true),
            item("quit", "Quit", true),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ksni::Tray as _;

    fn labels(items: &[ksni::MenuItem<Icon>]) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                ksni::MenuItem::Standard(s) => {
                    format!("{}{}", s.label, [" (off)", ""][s.enabled as usize])
                }
                ksni::MenuItem::SubMenu(m) => {
                    format!("{} [{}]", m.label, labels(&m.submenu).join(", "))
                }
                ksni::MenuItem::Separator => "-".into(),
                _ => "?".into(),
            })
            .collect()
    }

    #[test]
    fn the_menu_shows_the_state_and_the_countries_and_clicks_become_actions() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut icon = Icon::new(Entries::of(None), tx);
        assert_eq!(icon.pixmaps.len(), 2, "both icon sizes decode");
        assert_eq!(icon.pixmaps[0].data.len(), 32 * 32 * 4);
        icon.countries = vec![
            ("".into(), "Fastest server".into()),
            ("SE".into(), "Sweden (2 servers)".into()),
        ];
        assert_eq!(
            labels(&icon.menu()),
            [
                "Helper not running (off)",
                "-",
                "Connect (off)",
                "Connect to [Fastest server, Sweden (2 servers)]",
                "Disconnect (off)",
                "Show Underpass",
                "Quit"
            ]
        );
        let menu = icon.menu();
        let ksni::MenuItem::SubMenu(to) = &menu[3] else {
            panic!("no submenu")
        };
        let ksni::MenuItem::Standard(sweden) = &to.submenu[1] else {
            panic!("no entry")
        };
        (sweden.activate)(&mut icon);
        assert_eq!(
            rx.try_recv().unwrap(),
            Action::Connect(Some(crate::connect::Target::Fastest {
                country: Some("SE".into())
            }))
        );
        icon.activate(0, 0);
        assert_eq!(rx.try_recv().unwrap(), Action::Show);
    }

    #[test]
    fn underscores_in_names_are_not_mnemonics() {
        assert_eq!(label("Connected to my_vpn"), "Connected to my__vpn");
    }
}
