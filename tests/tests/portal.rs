//! The portal (`GET /`) in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol (the `headless_chrome` crate, synchronous), against a real node.
//!
//! The page is opened first, transfers are then submitted through the API while it polls, and
//! the test waits until the page shows what the API says (transactions confirmed, block height,
//! shards, validators, health); it then finds a submitted transfer by its hash and an account by
//! its address through the page's lookup forms, typing into them as a person does. Any console
//! error, uncaught exception or browser log error (a resource that failed to load, a
//! Content-Security-Policy violation) up to then fails the test. Last, a malformed hash shows the
//! API's error (code and message) in the page.
//!
//! Needs Chromium at `/usr/bin/chromium` (`tests/run` installs Debian's `chromium`;
//! `AURIGRAPH_CHROMIUM` names another binary). With `AURIGRAPH_WRITE_SCREENSHOTS=1` the test
//! writes the screenshot that the README shows, `docs/images/portal.png`.

use aurigraph_testkit::*;
use aurigraph_wire::record::{address_of, Record};
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::protocol::cdp::Log::LogEntryLevel;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::Runtime::ConsoleAPICalledEventTypeOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the page may take to show a figure (it polls every 1 to 5 s).
const SHOW_WITHIN: Duration = Duration::from_secs(20);
/// Transfers submitted while the page is open, one every [`SUBMIT_EVERY`].
const TRANSFERS: usize = 24;
const SUBMIT_EVERY: Duration = Duration::from_millis(100);
const WINDOW: (u32, u32) = (1280, 1220);

fn chromium() -> PathBuf {
    let path = std::env::var_os("AURIGRAPH_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found: install Debian's chromium (tests/run does), or name a Chromium binary \
         in AURIGRAPH_CHROMIUM",
        path.display()
    );
    path
}

/// Headless Chromium with a fresh profile, kept off the network beyond loopback (no background
/// requests, updates or sync) and run as root without a sandbox.
fn launch(profile: PathBuf) -> Browser {
    let args: Vec<&OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ]
    .iter()
    .map(OsStr::new)
    .collect();
    let options = LaunchOptions::default_builder()
        .path(Some(chromium()))
        .headless(true)
        .sandbox(false)
        .window_size(Some(WINDOW))
        .user_data_dir(Some(profile))
        .port(Some(free_port()))
        .idle_browser_timeout(Duration::from_secs(60))
        .args(args)
        .build()
        .expect("Chromium launch options");
    Browser::new(options).expect("start Chromium")
}

/// Collects the page's console errors, uncaught exceptions and browser log errors.
fn watch_problems(tab: &Tab) -> Arc<Mutex<Vec<String>>> {
    let problems = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&problems);
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let problem = match event {
            Event::RuntimeConsoleAPICalled(e)
                if matches!(
                    e.params.Type,
                    ConsoleAPICalledEventTypeOption::Error
                        | ConsoleAPICalledEventTypeOption::Assert
                ) =>
            {
                let args: Vec<String> = e
                    .params
                    .args
                    .iter()
                    .map(|a| {
                        a.value
                            .as_ref()
                            .map_or_else(|| format!("{:?}", a.description), Value::to_string)
                    })
                    .collect();
                Some(format!("console.error: {}", args.join(" ")))
            }
            Event::RuntimeExceptionThrown(e) => {
                let details = &e.params.exception_details;
                let description = details
                    .exception
                    .as_ref()
                    .and_then(|x| x.description.clone())
                    .unwrap_or_default();
                Some(format!("exception: {} {description}", details.text))
            }
            Event::LogEntryAdded(e) if e.params.entry.level == LogEntryLevel::Error => {
                let entry = &e.params.entry;
                Some(format!(
                    "log error ({:?}): {} {}",
                    entry.source,
                    entry.text,
                    entry.url.as_deref().unwrap_or("")
                ))
            }
            _ => None,
        };
        if let Some(problem) = problem {
            sink.lock().unwrap().push(problem);
        }
    }))
    .expect("listen to the page's events");
    tab.enable_runtime().expect("enable the Runtime domain");
    tab.enable_log().expect("enable the Log domain");
    problems
}

/// What the page shows in the element of `selector` (its text), `None` while there is none.
fn text(tab: &Tab, selector: &str) -> Option<String> {
    let selector = serde_json::to_string(selector).unwrap();
    let expression = format!("document.querySelector({selector})?.textContent ?? null");
    tab.evaluate(&expression, false)
        .expect("evaluate in the page")
        .value
        .and_then(|v| v.as_str().map(str::to_string))
}

/// Waits until the text of `selector` passes `check`; the test fails with the last text seen,
/// `what` and the problems collected so far.
fn wait_text(
    tab: &Tab,
    selector: &str,
    what: &str,
    problems: &Mutex<Vec<String>>,
    mut check: impl FnMut(&str) -> bool,
) -> String {
    let deadline = Instant::now() + SHOW_WITHIN;
    loop {
        let seen = text(tab, selector);
        if let Some(seen) = seen.as_deref().filter(|t| check(t)) {
            return seen.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the page did not show {what} within {SHOW_WITHIN:?}: {selector} shows {seen:?}; \
             problems: {:?}",
            problems.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The integer a figure shows ("1,234" is 1234).
fn figure(text: &str) -> Option<u64> {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == ','))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Waits until the figure of `selector` equals the API's `value` as read at the same moment.
fn wait_figure(
    tab: &Tab,
    selector: &str,
    problems: &Mutex<Vec<String>>,
    mut api: impl FnMut() -> u64,
) -> u64 {
    let mut last = 0;
    wait_text(tab, selector, "the API's figure", problems, |t| {
        last = api();
        figure(t) == Some(last)
    });
    last
}

/// Types `value` into the lookup form's input, submits it with its button and waits for the
/// answer (the result's `data-state` leaves `busy`): its state and text.
fn look_up(tab: &Tab, form: &str, value: &str) -> (String, String) {
    let input = tab
        .find_element(&format!("#{form}-form input"))
        .expect("the lookup's input");
    // Empty it first (a previous lookup's text), then type (the text arrives as one input
    // event, as a paste does) and click the button.
    input
        .call_js_fn("function () { this.value = ''; }", vec![], false)
        .expect("clear the input");
    input.click().expect("focus the input");
    tab.send_character(value).expect("type into the input");
    tab.find_element(&format!("#{form}-form button"))
        .expect("the lookup's button")
        .click()
        .expect("click the button");
    let result = format!("#{form}-result");
    let state_of = |tab: &Tab| {
        let selector = serde_json::to_string(&result).unwrap();
        tab.evaluate(
            &format!("document.querySelector({selector}).dataset.state ?? null"),
            false,
        )
        .expect("evaluate in the page")
        .value
        .and_then(|v| v.as_str().map(str::to_string))
    };
    let deadline = Instant::now() + SHOW_WITHIN;
    loop {
        if let Some(state) = state_of(tab).filter(|s| s != "busy") {
            return (state, text(tab, &result).unwrap_or_default());
        }
        assert!(
            Instant::now() < deadline,
            "{form} lookup of {value} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_portal_shows_the_nodes_figures_and_finds_transfers_and_accounts() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(4);
    let node = Node::start(dir.path(), Some(&genesis(&keys, 2)));
    let url = format!("http://127.0.0.1:{}/", node.port);

    let browser = launch(dir.path().join("chromium-profile"));
    let tab = browser.new_tab().expect("open a tab");
    let problems = watch_problems(&tab);
    tab.navigate_to(&url)
        .and_then(|t| t.wait_until_navigated())
        .expect("load the portal");
    // The script ran and read the API: the node's id in the header and the title.
    wait_text(&tab, "#node-title", "the node's id", &problems, |t| {
        t == "node 1"
    });
    assert_eq!(tab.get_title().unwrap(), "Aurigraph node 1");

    // Transfers while the page polls: 4 senders in turn, each to the next.
    let mut submitted: Vec<Record> = Vec::with_capacity(TRANSFERS);
    for i in 0..TRANSFERS {
        let from = &keys[i % keys.len()];
        let to = address_of(&keys[(i + 1) % keys.len()]);
        let record = transfer(from, to, 10 + i as u64, (i / keys.len()) as u64 + 1);
        assert_eq!(node.submit_ok(&record)["result"], "OK");
        submitted.push(record);
        std::thread::sleep(SUBMIT_EVERY);
    }

    // The figures the API gives, shown by the page.
    let stats = || node.get("/api/v11/stats").json();
    let confirmed = wait_figure(&tab, "#stat-total", &problems, || {
        stats()["performance"]["totalTransactions"]
            .as_u64()
            .unwrap()
    });
    assert_eq!(confirmed, TRANSFERS as u64);
    let height = wait_figure(&tab, "#stat-height", &problems, || {
        stats()["consensus"]["blockHeight"].as_u64().unwrap()
    });
    assert!(height >= TRANSFERS as u64, "block height {height}");
    wait_text(&tab, "#stat-peak-tps", "a peak TPS", &problems, |t| {
        figure(t).is_some_and(|n| n > 0)
    });
    // Every shard with its leader and lags, the validator leading both, health and beacon.
    let shards = wait_text(&tab, "#shards", "both shards", &problems, |t| {
        t.matches("LEADER").count() == 2
    });
    assert!(shards.contains("node 1"), "{shards}");
    wait_text(&tab, "#validators", "the validator", &problems, |t| {
        t.contains("node 1 (this node)") && t.contains("ACTIVE") && t.contains("0, 1")
    });
    let health = wait_text(&tab, "#health", "the health checks", &problems, |t| {
        t.contains("ledger") && t.contains("beacon")
    });
    assert!(
        health.contains("serving LOCAL_FALLBACK") && !health.contains("DOWN"),
        "{health}"
    );
    let latest = node.get("/api/v11/blocks/latest").json();
    let block_hash = latest["blocks"][0]["hash"].as_str().unwrap()[..16].to_string();
    wait_text(&tab, "#blocks", "the latest block", &problems, |t| {
        t.contains(&block_hash)
    });

    // A submitted transfer by its hash, as the API knows it.
    let last = submitted.last().unwrap();
    let hash = last.tx_hash().to_hex();
    let known = node.get(&format!("/api/v11/transactions/{hash}")).json();
    let (state, shown) = look_up(&tab, "tx", &hash);
    assert_eq!(state, "ok", "{shown}");
    let block = known["blockNumber"].as_u64().unwrap().to_string();
    for expected in [hash.as_str(), "CONFIRMED", "OK", block.as_str()] {
        assert!(shown.contains(expected), "{expected} not in {shown:?}");
    }
    // An account by its address: its balance and nonce as the API gives them.
    let address = address_of(&keys[1]).to_hex();
    let account = node.get(&format!("/api/v11/accounts/{address}")).json();
    let (state, shown) = look_up(&tab, "account", &address);
    assert_eq!(state, "ok", "{shown}");
    let balance = format!("asset 0: {}", account["balances"]["0"].as_str().unwrap());
    let nonce = account["nonce"].as_str().unwrap();
    assert_ne!(nonce, "0");
    for expected in [address.as_str(), balance.as_str(), nonce] {
        assert!(shown.contains(expected), "{expected} not in {shown:?}");
    }
    assert!(
        problems.lock().unwrap().is_empty(),
        "the page logged errors: {:?}",
        problems.lock().unwrap()
    );

    if std::env::var_os("AURIGRAPH_WRITE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let png = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .expect("screenshot");
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/images/portal.png");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
        eprintln!("wrote {}", path.display());
    }

    // A malformed hash: the API's error, code and message, in the page (the browser logs the
    // 400 it answered, which is expected here).
    let (state, shown) = look_up(&tab, "tx", "not-a-hash");
    assert_eq!(state, "error", "{shown}");
    assert!(shown.starts_with("INVALID_TX_HASH "), "{shown}");
    eprintln!("portal test took {:?}", started.elapsed());
}
