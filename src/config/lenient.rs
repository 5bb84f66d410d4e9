//! Values parsed from their text that never stop deserialization: a value
//! that does not parse is kept with its text and the reason, so validation
//! can report it with its path along with every other problem.

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeOwned};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value of the file written as text (a duration, a name from a fixed set):
/// either parsed, or the text with the problem's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lenient<T> {
    text: String,
    parsed: Result<T, String>,
}

/// How a [`Lenient`] value is read from and written as text.
pub trait Text: Sized {
    /// The value, or a message that quotes `s` and says what would do.
    fn from_text(s: &str) -> Result<Self, String>;
    fn to_text(&self) -> String;
}

impl<T: Text> Lenient<T> {
    pub fn parse(text: impl Into<String>) -> Self {
        let text = text.into();
        let parsed = T::from_text(&text);
        Lenient { text, parsed }
    }

    /// The text as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value, or the message saying why the text is not one.
    pub fn into_result(self) -> Result<T, String> {
        self.parsed
    }
}

impl<T: Text> From<T> for Lenient<T> {
    fn from(value: T) -> Self {
        Lenient {
            text: value.to_text(),
            parsed: Ok(value),
        }
    }
}

impl<T: Text> From<&str> for Lenient<T> {
    fn from(text: &str) -> Self {
        Lenient::parse(text)
    }
}

impl<T: Text> From<String> for Lenient<T> {
    fn from(text: String) -> Self {
        Lenient::parse(text)
    }
}

/// A value that is not a string stays a type error (the file does not parse).
impl<'de, T: Text> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Lenient::parse)
    }
}

impl<T> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A fieldless enum named in the file by its serde name (`rename_all =
/// "lowercase"`); parsed by its `Deserialize`, which also lists the names
/// for the message.
pub trait Choice: Serialize + DeserializeOwned {}

impl<T: Choice> Text for T {
    fn from_text(s: &str) -> Result<Self, String> {
        T::deserialize(de::value::StrDeserializer::<Rejection>::new(s)).map_err(|e| match e {
            Rejection::Unknown(names) => format!("{s:?} must be {}", one_of(names)),
            Rejection::Other(message) => message,
        })
    }

    fn to_text(&self) -> String {
        match toml::Value::try_from(self) {
            Ok(toml::Value::String(s)) => s,
            _ => String::new(),
        }
    }
}

/// `"a", "b" or "c"`.
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Why serde refused a name: keeps the list of names it expected.
#[derive(Debug)]
enum Rejection {
    Unknown(&'static [&'static str]),
    Other(String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Unknown(names) => write!(f, "must be {}", one_of(names)),
            Rejection::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Rejection {}

impl de::Error for Rejection {
    fn custom<M: fmt::Display>(msg: M) -> Self {
        Rejection::Other(msg.to_string())
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Rejection::Unknown(expected)
    }
}

/// `"250ms"`, `"30s"`, `"24h"`. Zero parses; validation refuses it where a
/// duration must be positive.
impl Text for Duration {
    fn from_text(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s).map_err(|e| {
            format!("invalid duration {s:?} ({e}); use e.g. \"250ms\", \"30s\", \"24h\"")
        })
    }

    fn to_text(&self) -> String {
        humantime::format_duration(*self).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnBackendError;

    #[test]
    fn names_come_from_serde() {
        let bad = Lenient::<OnBackendError>::parse("panic");
        assert_eq!(bad.text(), "panic");
        assert_eq!(
            bad.into_result(),
            Err("\"panic\" must be \"local\", \"allow\" or \"deny\"".into())
        );
        assert_eq!(
            Lenient::from("deny").into_result(),
            Ok(OnBackendError::Deny)
        );
        assert_eq!(Lenient::from(OnBackendError::Allow).text(), "allow");
    }

    #[test]
    fn durations_round_trip() {
        let d = Lenient::<Duration>::from(Duration::from_millis(1500));
        assert_eq!(
            Lenient::<Duration>::parse(d.text()).into_result(),
            Ok(Duration::from_millis(1500))
        );
        assert!(Lenient::<Duration>::parse("fast").into_result().is_err());
    }
}
