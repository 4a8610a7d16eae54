//! The small self-contained HTML pages the login callback server shows in the browser.

/// The page shown once the login is saved.
pub(crate) fn success() -> String {
    page(
        "Signed in",
        "You are signed in to agent-server. You can close this tab and return to your editor.",
    )
}

/// The page shown when the login failed; `message` says why.
pub(crate) fn failure(message: &str) -> String {
    page(
        "Sign-in failed",
        &format!(
            "{}. Start the login again from your editor or with <code>agent-server login</code>.",
            escape(message)
        ),
    )
}

/// The page shown for a callback that does not belong to the pending login.
pub(crate) fn bad_request(reason: &str) -> String {
    page(
        "Unexpected request",
        &format!(
            "{}. The login is still waiting; use the link your editor opened.",
            escape(reason)
        ),
    )
}

/// The page for an unknown path.
pub(crate) fn not_found() -> String {
    page(
        "Not found",
        "This address only serves the agent-server login callback.",
    )
}

fn page(title: &str, body_html: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title} - agent-server</title><style>body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}h1{{font-size:1.4rem}}code{{background:#eee;padding:0 .2rem}}</style></head><body><h1>{title}</h1><p>{body_html}</p></body></html>\n"
    )
}

/// Escapes text for HTML: issuer error descriptions come from the URL and must not inject markup.
fn escape(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_text_is_escaped() {
        let html = failure("bad <script>alert('x')</script> & more");
        assert!(
            html.contains("bad &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more."),
            "{html}"
        );
        assert!(!html.contains("<script>"));
    }
}
