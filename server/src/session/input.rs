//! User input items → a typed user message for the model.

use std::path::Path;

use agent_server_schema::session::InputItem;
use base64::Engine;

use crate::model::{ContentItem, ResponseItem};

/// Why the input could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Neither `text` nor `input`, or both, or an empty list.
    #[error("send either `text` or a non-empty `input` list")]
    Empty,
    /// A `localImage` file is missing or unreadable.
    #[error(
        "cannot read image `{path}`: {reason}; check the path (relative paths are taken from the session cwd)"
    )]
    Unreadable {
        /// The path as given.
        path: String,
        /// Why.
        reason: String,
    },
    /// An `image` URL is neither `data:` nor `https:`.
    #[error("image url must start with data: or https:, not `{0}`")]
    BadUrl(String),
}

impl InputError {
    /// The params field this error is about.
    pub fn field(&self) -> &'static str {
        match self {
            InputError::Empty => "input",
            InputError::Unreadable { .. } => "input[].path",
            InputError::BadUrl(_) => "input[].url",
        }
    }
}

/// Builds the user message, reading local images now so a bad path fails the submit.
pub fn to_user_message(items: &[InputItem], cwd: &Path) -> Result<ResponseItem, InputError> {
    if items.is_empty() {
        return Err(InputError::Empty);
    }
    let mut content = Vec::with_capacity(items.len());
    for item in items {
        content.push(match item {
            InputItem::Text { text } => ContentItem::InputText { text: text.clone() },
            InputItem::Image { url } => {
                if !(url.starts_with("data:") || url.starts_with("https:")) {
                    return Err(InputError::BadUrl(url.clone()));
                }
                ContentItem::InputImage {
                    image_url: url.clone(),
                }
            }
            InputItem::LocalImage { path } => ContentItem::InputImage {
                image_url: data_url(path, cwd)?,
            },
        });
    }
    Ok(ResponseItem::user_message(content))
}

/// The text items of an input, joined by newlines (what `session/list` searches).
pub(crate) fn user_text(items: &[InputItem]) -> String {
    let texts: Vec<&str> = items
        .iter()
        .filter_map(|item| match item {
            InputItem::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    texts.join("\n")
}

/// Longest title made from user text, in characters.
const TITLE_CHARS: usize = 80;

/// A title from user text: its first non-blank line, cut at 80 characters.
pub(crate) fn title_of(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.chars().take(TITLE_CHARS).collect())
}

fn data_url(path: &str, cwd: &Path) -> Result<String, InputError> {
    let full = cwd.join(path);
    let bytes = std::fs::read(&full).map_err(|e| InputError::Unreadable {
        path: path.to_string(),
        reason: e.to_string(),
    })?;
    let mime = match full
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    };
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn a_title_is_the_first_line_of_user_text_cut_at_80_characters() {
        assert_eq!(
            title_of("\n  Fix the build \nthen more").as_deref(),
            Some("Fix the build")
        );
        let long = "é".repeat(100);
        assert_eq!(title_of(&long).map(|t| t.chars().count()), Some(80));
        assert_eq!(title_of(" \n "), None);
        let items = vec![
            InputItem::Text { text: "a".into() },
            InputItem::Image {
                url: "https://x".into(),
            },
            InputItem::Text { text: "b".into() },
        ];
        assert_eq!(user_text(&items), "a\nb");
    }

    #[test]
    fn text_and_images_become_one_message() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), [1u8, 2, 3]).unwrap();
        let items = vec![
            InputItem::Text { text: "hi".into() },
            InputItem::Image {
                url: "https://x/y.png".into(),
            },
            InputItem::LocalImage {
                path: "a.png".into(),
            },
        ];
        assert_eq!(
            serde_json::to_value(to_user_message(&items, dir.path()).unwrap()).unwrap(),
            json!({"type":"message","role":"user","content":[
                {"type":"input_text","text":"hi"},
                {"type":"input_image","image_url":"https://x/y.png"},
                {"type":"input_image","image_url":"data:image/png;base64,AQID"}]})
        );
        let missing = to_user_message(
            &[InputItem::LocalImage {
                path: "nope.png".into(),
            }],
            dir.path(),
        )
        .unwrap_err();
        assert!(missing.to_string().contains("nope.png"));
    }
}
