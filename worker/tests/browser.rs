//! The integrations page in a real browser (headless Chromium through ChromeDriver): sign in, click
//! "Connect Instagram", approve on Meta's dialog (the sim), land on the green "Instagram Connected" card,
//! then Disconnect. Screenshots go to `target/test-artifacts/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the test says so and passes, unless
//! `OMNIDM_REQUIRE_BROWSER=1` (set by `.ci/run`, which installs them), where it fails.

mod support;

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use support::{Options, Stack, ADMIN_TOKEN};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

struct Driver {
    process: tokio::process::Child,
    url: String,
}

async fn start_driver() -> Option<Driver> {
    if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("OMNIDM_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "OMNIDM_REQUIRE_BROWSER=1 but {CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: chromium/chromedriver not installed (apt-get install chromium chromium-driver)");
        return None;
    }
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let process = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            return Some(Driver { process, url });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not come up");
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            // The flags this machine's closed network needs (no background calls to Google).
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1000,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session starts")
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(artifacts().join(name), png).unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// Waits until the element's text contains `needle`. A click returns before the browser has
/// navigated, so the old page's element may still be the one found: poll instead of reading once.
async fn wait_for_text(client: &Client, css: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        if let Ok(element) = client.find(Locator::Css(css)).await {
            // A stale element (the page navigated between find and text) is just another try.
            if let Ok(text) = element.text().await {
                if text.contains(needle) {
                    return text;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css} never contained {needle:?}; last seen: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_connects_and_disconnects_instagram_in_a_real_browser() {
    let Some(mut driver) = start_driver().await else {
        return;
    };
    let stack = Stack::start(Options {
        seed_credential: false,
        ..Options::default()
    })
    .await;
    stack.sim.set_oauth_accounts(vec![stack.account.clone()]);
    let profile = std::env::temp_dir().join(format!("omnidm-chromium-{}", uuid::Uuid::new_v4().simple()));
    let client = browser(&driver, &profile).await;

    // Not signed in: the page sends us to the sign-in form, which brings us back.
    let page = format!(
        "{}/dashboard/integrations?customerId={}",
        stack.ingest_url, stack.customer_id
    );
    client.goto(&page).await.unwrap();
    let token = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("input[name=token]"))
        .await
        .unwrap();
    token.send_keys("not-the-token").await.unwrap();
    client
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&client, ".banner.err", "not right").await;
    let token = client.find(Locator::Css("input[name=token]")).await.unwrap();
    token.send_keys(ADMIN_TOKEN).await.unwrap();
    client
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Connect: our form → Meta's dialog (sim) → our callback → back here with a banner and the card.
    let connect = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("connect"))
        .await
        .unwrap();
    assert_eq!(connect.text().await.unwrap(), "Connect Instagram");
    screenshot(&client, "integrations-before-connect.png").await;
    connect.click().await.unwrap();
    let card = text_of(&client, "section.card.connected").await;
    assert!(card.contains("Instagram Connected"), "{card}");
    assert!(card.contains(&format!("@{}", stack.account.username)), "{card}");
    assert!(card.contains("active"), "{card}");
    wait_for_text(&client, "#banner", "Instagram connected").await;
    let url = client.current_url().await.unwrap();
    assert_eq!(
        url.query_pairs()
            .find(|(k, _)| k == "success")
            .map(|(_, v)| v.into_owned()),
        Some("instagram_connected".to_owned())
    );
    screenshot(&client, "integrations-connected.png").await;
    assert_eq!(stack.credential_status().await.as_deref(), Some("active"));

    // Disconnect.
    client
        .find(Locator::Id(&format!(
            "disconnect-{}",
            stack.account.ig_account_id
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&client, "#banner", "Instagram disconnected").await;
    assert!(client.find(Locator::Css("section.card.connected")).await.is_err());
    assert_eq!(text_of(&client, "#connect").await, "Connect Instagram");
    screenshot(&client, "integrations-disconnected.png").await;
    assert_eq!(stack.credential_status().await.as_deref(), Some("disconnected"));
    assert!(stack
        .sim
        .subscriptions(&stack.account.page_id)
        .unwrap_or_default()
        .is_empty());

    client.close().await.unwrap();
    let _ = driver.process.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
    stack.stop().await;
}
