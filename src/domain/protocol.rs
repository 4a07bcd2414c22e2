//! The names of the three client-facing APIs. What each one's wire looks like is in
//! `crate::protocol` (an extension of this enum); here is only which one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::UnknownName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// OpenAI Responses (`/v1/responses`, `/responses/compact`).
    Responses,
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    Chat,
    /// Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`).
    Messages,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Responses => "responses",
            Protocol::Chat => "chat_completions",
            Protocol::Messages => "messages",
        }
    }
}

impl Protocol {
    /// The name of the upstream API in `accounts[].protocols` (`responses`, `chat`, `messages`).
    pub fn api_name(self) -> &'static str {
        match self {
            Protocol::Responses => "responses",
            Protocol::Chat => "chat",
            Protocol::Messages => "messages",
        }
    }

    /// Reads an `accounts[].protocols` entry.
    pub fn from_api_name(text: &str) -> Result<Self, UnknownName> {
        match text {
            "responses" => Ok(Protocol::Responses),
            "chat" => Ok(Protocol::Chat),
            "messages" => Ok(Protocol::Messages),
            other => Err(UnknownName {
                given: other.to_owned(),
                allowed: "responses, chat or messages",
            }),
        }
    }
}

/// A list of upstream APIs by their `accounts[].protocols` names (config, store, admin API).
pub mod api_names {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Protocol;

    pub fn serialize<S: Serializer>(list: &Option<Vec<Protocol>>, s: S) -> Result<S::Ok, S::Error> {
        match list {
            None => s.serialize_none(),
            Some(list) => s.collect_seq(list.iter().map(|p| p.api_name())),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Protocol>>, D::Error> {
        let Some(names) = Option::<Vec<String>>::deserialize(d)? else {
            return Ok(None);
        };
        names
            .iter()
            .map(|n| Protocol::from_api_name(n).map_err(serde::de::Error::custom))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

impl FromStr for Protocol {
    type Err = UnknownName;

    fn from_str(text: &str) -> Result<Self, UnknownName> {
        match text {
            "responses" => Ok(Protocol::Responses),
            "chat_completions" => Ok(Protocol::Chat),
            "messages" => Ok(Protocol::Messages),
            other => Err(UnknownName {
                given: other.to_owned(),
                allowed: "responses, chat_completions or messages",
            }),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Protocol::Responses, Protocol::Chat, Protocol::Messages] {
            assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Protocol>(&json).unwrap(), p);
        }
        assert!("chat".parse::<Protocol>().is_err());
    }
}
