//! The dashboard's HTML. Every dynamic value goes through [`escape`]; there is no script at all.

use crate::store::connections::Connection;
use crate::store::customers::Customer;
use omnidm_shared::states::CredentialStatus;
use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f6f7f9;color:#1f2328;margin:0}
main{max-width:640px;margin:48px auto;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}p.sub{color:#59636e;margin:0 0 24px}
.card{background:#fff;border:1px solid #d1d9e0;border-radius:12px;padding:20px;margin:16px 0}
.card.connected{border-color:#1a7f37;background:#f0fff4}.card.warning{border-color:#bf8700;background:#fff8c5}
.card h2{font-size:17px;margin:0 0 8px}.meta{color:#59636e;font-size:14px;margin:4px 0}
.badge{display:inline-block;border-radius:999px;padding:2px 10px;font-size:12px;font-weight:600}
.badge.active{background:#dafbe1;color:#1a7f37}.badge.expiring,.badge.reauth_required{background:#fff8c5;color:#9a6700}
.badge.disconnected{background:#eff2f5;color:#59636e}
button{font:inherit;border-radius:8px;padding:10px 18px;border:1px solid transparent;cursor:pointer}
button.primary{background:linear-gradient(45deg,#f09433,#dc2743,#bc1888);color:#fff;font-weight:600}
button.danger{background:#fff;color:#cf222e;border-color:#cf222e}
.banner{border-radius:8px;padding:12px 16px;margin:16px 0}.banner.ok{background:#dafbe1;color:#1a7f37}
.banner.err{background:#ffebe9;color:#cf222e}input[type=password]{font:inherit;padding:8px;width:100%;box-sizing:border-box;margin:8px 0 16px}
ul.customers{list-style:none;padding:0}ul.customers li{margin:8px 0}a{color:#0969da}
";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Omniops DM</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// The sign-in form.
pub fn login(next: &str, failed: bool) -> String {
    let error = if failed {
        "<div class=\"banner err\" role=\"alert\">That token is not right.</div>"
    } else {
        ""
    };
    layout(
        "Sign in",
        &format!(
            "<h1>Omniops DM</h1><p class=\"sub\">Sign in with the admin token to manage integrations.</p>{error}\
             <form class=\"card\" method=\"post\" action=\"/dashboard/login\">\
             <label for=\"token\">Admin token</label>\
             <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
             <input type=\"hidden\" name=\"next\" value=\"{}\">\
             <button class=\"primary\" id=\"sign-in\" type=\"submit\">Sign in</button></form>",
            escape(next)
        ),
    )
}

/// The readable banner for the page's `success`/`error` parameter (unknown values show nothing).
pub fn banner(success: Option<&str>, error: Option<&str>) -> String {
    let (class, text) = match (success, error) {
        (Some("instagram_connected"), _) => ("ok", "Instagram connected. New DMs will be answered by your assistant."),
        (Some("instagram_disconnected"), _) => ("ok", "Instagram disconnected. Your conversation history is kept."),
        (_, Some("oauth_denied")) => ("err", "You cancelled the connection on Instagram. Nothing was changed."),
        (_, Some("invalid_state")) => ("err", "That connection link expired or was already used. Please click Connect again."),
        (_, Some("oauth_failed")) => ("err", "Instagram did not complete the connection. Make sure the account is a professional account linked to a Facebook Page, then try again."),
        (_, Some("not_connected")) => ("err", "There was no connected account to disconnect."),
        _ => return String::new(),
    };
    format!("<div class=\"banner {class}\" role=\"status\" id=\"banner\">{text}</div>")
}

/// Without a customer in the URL: pick one.
pub fn customer_picker(customers: &[Customer], banner: String) -> String {
    let mut list = String::new();
    for c in customers {
        let _ = write!(
            list,
            "<li><a href=\"/dashboard/integrations?customerId={}\">{}</a></li>",
            c.id,
            escape(&c.name)
        );
    }
    if list.is_empty() {
        list.push_str("<li>No customers yet. Create one with <code>POST /api/customers</code>.</li>");
    }
    layout(
        "Integrations",
        &format!("<h1>Integrations</h1><p class=\"sub\">Choose a business.</p>{banner}<ul class=\"customers\">{list}</ul>"),
    )
}

/// The integrations page of one customer.
pub fn integrations(customer: &Customer, accounts: &[Connection], banner: String, csrf: &str) -> String {
    let customer_id = customer.id.to_string();
    let hidden = format!(
        "<input type=\"hidden\" name=\"customerId\" value=\"{customer_id}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    );
    let mut cards = String::new();
    for account in accounts
        .iter()
        .filter(|a| a.status != CredentialStatus::Disconnected)
    {
        let handle = account
            .username
            .as_deref()
            .map_or_else(|| account.account_id.clone(), |u| format!("@{u}"));
        let (class, title) = if account.is_connected() {
            ("connected", "Instagram Connected")
        } else {
            ("warning", "Instagram needs to be reconnected")
        };
        let reconnect = if account.is_connected() {
            String::new()
        } else {
            format!(
                "<form method=\"post\" action=\"/dashboard/integrations/connect\" style=\"display:inline\">{hidden}\
                 <button class=\"primary\" type=\"submit\">Reconnect</button></form> "
            )
        };
        let expiry = account.token_expires_at.map_or_else(String::new, |at| {
            format!("<p class=\"meta\">Token expires {}</p>", at.format("%B %-d, %Y"))
        });
        let last_webhook = account.last_webhook_at.map_or_else(
            || "<p class=\"meta\">No messages received yet</p>".to_owned(),
            |at| {
                format!(
                    "<p class=\"meta\">Last message received {}</p>",
                    at.format("%B %-d, %Y %H:%M UTC")
                )
            },
        );
        let _ = write!(
            cards,
            "<section class=\"card {class}\" data-account=\"{account_id}\"><h2>{title}</h2>\
             <p class=\"meta\"><strong class=\"username\">{handle}</strong> \
             <span class=\"badge {status}\">{status_text}</span></p>\
             <p class=\"meta\">Connected {connected}</p>{expiry}{last_webhook}\
             {reconnect}<form method=\"post\" action=\"/dashboard/integrations/disconnect\" style=\"display:inline\">{hidden}\
             <input type=\"hidden\" name=\"accountId\" value=\"{account_id}\">\
             <button class=\"danger\" type=\"submit\" id=\"disconnect-{account_id}\">Disconnect</button></form></section>",
            account_id = escape(&account.account_id),
            handle = escape(&handle),
            status = escape(account.status.as_str()),
            status_text = escape(&account.status.as_str().replace('_', " ")),
            connected = account.connected_at.format("%B %-d, %Y"),
        );
    }
    let connect = format!(
        "<section class=\"card\"><h2>{}</h2><p class=\"meta\">Answer every Instagram DM with your AI assistant. \
         You will approve access on Meta, then come back here.</p>\
         <form method=\"post\" action=\"/dashboard/integrations/connect\">{hidden}\
         <button class=\"primary\" id=\"connect\" type=\"submit\">Connect Instagram</button></form></section>",
        if cards.is_empty() { "Instagram" } else { "Add another Instagram account" }
    );
    layout(
        "Integrations",
        &format!(
            "<h1>Integrations</h1><p class=\"sub\">{}</p>{banner}{cards}{connect}\
             <form method=\"post\" action=\"/dashboard/logout\"><button type=\"submit\">Sign out</button></form>",
            escape(&customer.name)
        ),
    )
}

/// An error page.
pub fn error(message: &str) -> String {
    layout(
        "Error",
        &format!(
            "<h1>Something went wrong</h1><div class=\"banner err\">{}</div>\
             <p><a href=\"/dashboard/integrations\">Back to integrations</a></p>",
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_neutralises_markup_and_attribute_breakouts() {
        assert_eq!(
            escape("<script>\"x\"&'y'"),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;"
        );
    }

    #[test]
    fn unknown_banner_values_are_not_reflected() {
        assert_eq!(banner(Some("<b>hi</b>"), None), "");
        assert_eq!(banner(None, Some("javascript:alert(1)")), "");
        assert!(banner(Some("instagram_connected"), None).contains("connected"));
    }

    #[test]
    fn url_encoding_keeps_paths_readable() {
        assert_eq!(url_encode("/dashboard/x?a=b&c"), "/dashboard/x%3Fa%3Db%26c");
    }
}
