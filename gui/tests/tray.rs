//! The tray icon over real D-Bus: a private session bus (`dbus-daemon`),
//! this test playing the desktop's StatusNotifierWatcher and host, and the
//! real `trine-gui` on a virtual display (Xvfb) talking to a fake daemon.
//! The test reads the icon's tooltip and menu the way a desktop does,
//! clicks "Connect" in the menu, sees the daemon get `connect` and the
//! tooltip turn to the exit, then clicks "Quit" and sees the app end.
//!
//! Needs `dbus-daemon` and `xvfb-run` (scripts/install-deps.sh installs
//! them); not root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use trine_client::control::Request;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

/// Kills a child's whole process group when dropped (xvfb-run starts
/// Xvfb and the app under it).
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

fn spawn_group(command: &mut Command) -> Group {
    Group(command.process_group(0).spawn().unwrap())
}

/// The desktop's side: records which items registered.
struct Watcher {
    items: Arc<Mutex<Vec<String>>>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl Watcher {
    fn register_status_notifier_item(&self, service: String) {
        self.items.lock().unwrap().push(service);
    }

    fn register_status_notifier_host(&self, _service: String) {}

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items.lock().unwrap().clone()
    }

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }
}

/// A dbusmenu layout item: id, properties, children (each a variant
/// holding an item).
type Item = (i32, HashMap<String, OwnedValue>, Vec<OwnedValue>);

/// The id of the item labelled `label` in the layout under `value`.
fn item_labelled(value: &Value<'_>, label: &str) -> Option<i32> {
    let value = match value {
        Value::Value(inner) => inner,
        other => other,
    };
    let Value::Structure(item) = value else {
        return None;
    };
    let [
        Value::I32(id),
        Value::Dict(properties),
        Value::Array(children),
    ] = item.fields()
    else {
        return None;
    };
    let own: Option<String> = properties.get(&"label").ok().flatten();
    if own.as_deref() == Some(label) {
        return Some(*id);
    }
    children
        .iter()
        .find_map(|child| item_labelled(child, label))
}

type ToolTip = (String, Vec<(i32, i32, Vec<u8>)>, String, String);

fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_tray_icon_shows_the_state_and_its_menu_connects_and_quits() {
    for tool in ["dbus-daemon", "xvfb-run"] {
        assert!(
            Command::new(tool).arg("--help").output().is_ok(),
            "{tool} is missing: run scripts/install-deps.sh (as root)"
        );
    }
    let dir = std::env::temp_dir().join(format!("trine-gui-tray-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut bus = spawn_group(
        Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", dir.join("bus").display()))
            .stdout(Stdio::piped()),
    );
    let mut address = String::new();
    BufReader::new(bus.0.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let address = address.trim().to_string();

    let items: Arc<Mutex<Vec<String>>> = Arc::default();
    let desktop = zbus::blocking::connection::Builder::address(address.as_str())
        .unwrap()
        .name("org.kde.StatusNotifierWatcher")
        .unwrap()
        .serve_at(
            "/StatusNotifierWatcher",
            Watcher {
                items: items.clone(),
            },
        )
        .unwrap()
        .build()
        .unwrap();

    let (socket, fake) = common::fake_daemon("tray-dbus");
    let mut app = spawn_group(
        Command::new("timeout")
            .args(["120", "xvfb-run", "-a", "-s", "-screen 0 1024x768x24"])
            .arg(env!("CARGO_BIN_EXE_trine-gui"))
            .arg("--socket")
            .arg(&socket)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let item = wait_until("the app's tray icon to register", || {
        items.lock().unwrap().first().cloned()
    });
    let proxy = |path: &str, interface: &'static str| {
        zbus::blocking::proxy::Builder::<zbus::blocking::Proxy<'_>>::new(&desktop)
            .destination(item.clone())
            .unwrap()
            .path(path.to_string())
            .unwrap()
            .interface(interface)
            .unwrap()
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .unwrap()
    };
    let icon = proxy("/StatusNotifierItem", "org.kde.StatusNotifierItem");
    let tooltip = |want: &str| {
        wait_until(&format!("the tooltip to say {want}"), || {
            let tip: ToolTip = icon.get_property("ToolTip").ok()?;
            (tip.2 == want).then_some(tip.3)
        })
    };
    tooltip("Trine: Disconnected");
    let pixmaps: Vec<(i32, i32, Vec<u8>)> = icon.get_property("IconPixmap").unwrap();
    assert!(
        pixmaps
            .iter()
            .any(|(w, h, data)| data.len() == (w * h * 4) as usize && *w > 0),
        "no usable icon"
    );

    let menu_path: OwnedObjectPath = icon.get_property("Menu").unwrap();
    let menu = proxy(menu_path.as_str(), "com.canonical.dbusmenu");
    // As a desktop does: read the layout, then click an item by its id.
    let click = |label: &str| {
        let (_revision, root): (u32, Item) = menu
            .call("GetLayout", &(0i32, -1i32, Vec::<String>::new()))
            .unwrap();
        let id = root
            .2
            .iter()
            .find_map(|child| item_labelled(child, label))
            .unwrap_or_else(|| panic!("no `{label}` in the tray menu: {root:?}"));
        let () = menu
            .call("Event", &(id, "clicked", Value::from(0i32), 0u32))
            .unwrap();
    };
    click("Connect");
    wait_until("the daemon to get connect", || {
        fake.lock()
            .unwrap()
            .requests
            .contains(&Request::Connect)
            .then_some(())
    });
    let detail = tooltip("Trine: Connected");
    assert_eq!(detail, "Exit address 198.18.0.32");

    click("Quit");
    let status = wait_until("the app to quit", || app.0.try_wait().unwrap());
    assert!(status.success(), "the app ended with {status}");
    drop(bus);
    let _ = std::fs::remove_dir_all(&dir);
}
