//! The tray icon: a StatusNotifierItem on the session bus (through ksni),
//! for desktops that show one (KDE, GNOME with the AppIndicator
//! extension, most others). It shows the state at a glance (a coloured
//! dot, a tooltip with the state and exit) and offers a menu: connect or
//! disconnect, new circuit, open the window, quit.
//!
//! The tray never talks to the daemon: its menu sends [`TrayAction`]s to
//! the window's [`Gui`](crate::Gui), which owns the one control
//! connection, and the window publishes a [`TrayView`] whenever what the
//! tray should show changes. Where no tray host exists, [`spawn`] fails
//! and the window stays the whole app.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

use ksni::blocking::TrayMethods;
use ksni::menu::{MenuItem, StandardItem};

/// What the user picked in the tray's menu (or a click on the icon,
/// which opens the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayAction {
    /// Bring the tunnel up.
    Connect,
    /// Take the tunnel down.
    Disconnect,
    /// Move to a fresh path (new exit).
    NewCircuit,
    /// Show the window (also a click on the icon).
    OpenWindow,
    /// End the app (the daemon and its tunnel stay as they are).
    Quit,
}

/// What the tray shows: derived from the window's screen by
/// [`Gui::tray_view`](crate::Gui::tray_view).
#[derive(Debug, Clone, PartialEq)]
pub struct TrayView {
    /// The state in words ("Connected", "The daemon is not running").
    pub headline: String,
    /// A second line: the exit address or the error.
    pub detail: String,
    /// The dot's colour (RGB).
    pub colour: [u8; 3],
    /// Connect or Disconnect, when the daemon answers.
    pub toggle: Option<TrayAction>,
    /// Whether "New circuit" makes sense now.
    pub new_circuit: bool,
    /// Something needs the user (an error, lockdown blocking).
    pub attention: bool,
}

/// The window's side of a tray: the actions the user picks, and a way to
/// publish what the tray shows. Tests build one without D-Bus with
/// [`TrayLink::new`].
pub struct TrayLink {
    actions: Receiver<TrayAction>,
    publish: Box<dyn FnMut(&TrayView)>,
    shown: Option<TrayView>,
}

impl TrayLink {
    /// A link whose views go to `publish` and whose actions come from
    /// `actions`.
    pub fn new(actions: Receiver<TrayAction>, publish: Box<dyn FnMut(&TrayView)>) -> Self {
        Self {
            actions,
            publish,
            shown: None,
        }
    }

    /// The next action the user picked, if any.
    pub(crate) fn next_action(&self) -> Option<TrayAction> {
        self.actions.try_recv().ok()
    }

    /// Publishes `view` if it differs from what the tray shows.
    pub(crate) fn show(&mut self, view: TrayView) {
        if self.shown.as_ref() != Some(&view) {
            (self.publish)(&view);
            self.shown = Some(view);
        }
    }
}

/// Puts the icon on the session bus's StatusNotifierItem host. `wake` is
/// called after each menu action (the window repaints and handles it).
/// Fails, with the reason, where there is no session bus or no tray host.
pub fn spawn(wake: impl Fn() + Send + Sync + 'static) -> Result<TrayLink, String> {
    let (actions, received) = channel();
    let tray = Tray {
        view: TrayView {
            headline: "Starting".to_string(),
            detail: String::new(),
            colour: GREY,
            toggle: None,
            new_circuit: false,
            attention: false,
        },
        actions,
        wake: Arc::new(wake),
    };
    let handle = tray.spawn().map_err(|error| error.to_string())?;
    Ok(TrayLink::new(
        received,
        Box::new(move |view: &TrayView| {
            let view = view.clone();
            handle.update(|tray| tray.view = view);
        }),
    ))
}

const GREY: [u8; 3] = [128, 128, 128];
/// Icon edge in pixels (hosts scale it).
const ICON: i32 = 32;

/// The ksni side: holds the view and sends picked actions.
struct Tray {
    view: TrayView,
    actions: Sender<TrayAction>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl Tray {
    fn pick(&self, action: TrayAction) {
        if self.actions.send(action).is_ok() {
            (self.wake)();
        }
    }

    fn item(label: &str, enabled: bool, action: TrayAction) -> MenuItem<Self> {
        StandardItem {
            label: label.to_string(),
            enabled,
            activate: Box::new(move |tray: &mut Self| tray.pick(action)),
            ..Default::default()
        }
        .into()
    }
}

impl ksni::Tray for Tray {
    fn id(&self) -> String {
        "trine-gui".to_string()
    }

    fn title(&self) -> String {
        "Trine".to_string()
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::Communications
    }

    fn status(&self) -> ksni::Status {
        if self.view.attention {
            ksni::Status::NeedsAttention
        } else {
            ksni::Status::Active
        }
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        vec![dot(self.view.colour)]
    }

    fn attention_icon_pixmap(&self) -> Vec<ksni::Icon> {
        self.icon_pixmap()
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        ksni::ToolTip {
            title: format!("Trine: {}", self.view.headline),
            description: self.view.detail.clone(),
            ..Default::default()
        }
    }

    fn activate(&mut self, _x: i32, _y: i32) {
        self.pick(TrayAction::OpenWindow);
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let mut items = vec![
            StandardItem {
                label: self.view.headline.clone(),
                enabled: false,
                ..Default::default()
            }
            .into(),
        ];
        match self.view.toggle {
            Some(TrayAction::Connect) => {
                items.push(Self::item("Connect", true, TrayAction::Connect))
            }
            Some(_) => items.push(Self::item("Disconnect", true, TrayAction::Disconnect)),
            None => {}
        }
        items.push(Self::item(
            "New circuit",
            self.view.new_circuit,
            TrayAction::NewCircuit,
        ));
        items.push(MenuItem::Separator);
        items.push(Self::item("Open Trine", true, TrayAction::OpenWindow));
        items.push(Self::item("Quit", true, TrayAction::Quit));
        items
    }
}

/// A filled circle in `colour` with a darker rim, as ARGB32 (network
/// byte order) as StatusNotifierItem wants.
fn dot([r, g, b]: [u8; 3]) -> ksni::Icon {
    let centre = (ICON as f32 - 1.0) / 2.0;
    let radius = ICON as f32 / 2.0 - 2.0;
    let mut data = Vec::with_capacity((ICON * ICON * 4) as usize);
    for y in 0..ICON {
        for x in 0..ICON {
            let distance = ((x as f32 - centre).powi(2) + (y as f32 - centre).powi(2)).sqrt();
            let pixel = if distance <= radius - 2.0 {
                [255, r, g, b]
            } else if distance <= radius {
                [255, r / 2, g / 2, b / 2]
            } else {
                [0, 0, 0, 0]
            };
            data.extend_from_slice(&pixel);
        }
    }
    ksni::Icon {
        width: ICON,
        height: ICON,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dot_is_opaque_in_the_middle_and_clear_in_the_corners() {
        let icon = dot([20, 160, 60]);
        assert_eq!(icon.data.len(), (ICON * ICON * 4) as usize);
        let at = |x: i32, y: i32| {
            let i = ((y * ICON + x) * 4) as usize;
            [
                icon.data[i],
                icon.data[i + 1],
                icon.data[i + 2],
                icon.data[i + 3],
            ]
        };
        assert_eq!(at(ICON / 2, ICON / 2), [255, 20, 160, 60]);
        assert_eq!(at(0, 0)[0], 0);
        assert_eq!(at(ICON - 1, ICON - 1)[0], 0);
    }
}
