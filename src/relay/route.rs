//! Native or translated, per attempt (issue 16): which upstream APIs may serve a request, and
//! how one account serves it — in the client's own API, or through one of the `translate`
//! directions.

use bytes::Bytes;

use super::Endpoint;
use crate::domain::{AccountSpec, Protocol};
use crate::translate::chat_via_messages::ChatViaMessages;
use crate::translate::chat_via_responses::ChatViaResponses;
use crate::translate::messages_via_responses::MessagesViaResponses;
use crate::translate::responses_via_chat::ResponsesViaChat;
use crate::translate::{StreamTranslator, Target, Translated, Translation, Untranslatable};

/// A translation the relay can make: client API → upstream API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    MessagesViaResponses,
    ChatViaResponses,
    ChatViaMessages,
    ResponsesViaChat,
}

impl Direction {
    /// The API the account is spoken to in.
    pub fn upstream(self) -> Protocol {
        match self {
            Direction::MessagesViaResponses | Direction::ChatViaResponses => Protocol::Responses,
            Direction::ChatViaMessages => Protocol::Messages,
            Direction::ResponsesViaChat => Protocol::Chat,
        }
    }

    pub fn request(self, body: &[u8], target: &Target) -> Result<Translated, Untranslatable> {
        match self {
            Direction::MessagesViaResponses => MessagesViaResponses::request(body, target),
            Direction::ChatViaResponses => ChatViaResponses::request(body, target),
            Direction::ChatViaMessages => ChatViaMessages::request(body, target),
            Direction::ResponsesViaChat => ResponsesViaChat::request(body, target),
        }
    }

    pub fn stream_for(
        self,
        client_request: &[u8],
        client_model: &str,
    ) -> Box<dyn StreamTranslator> {
        match self {
            Direction::MessagesViaResponses => {
                MessagesViaResponses::stream_for(client_request, client_model)
            }
            Direction::ChatViaResponses => {
                ChatViaResponses::stream_for(client_request, client_model)
            }
            Direction::ChatViaMessages => ChatViaMessages::stream_for(client_request, client_model),
            Direction::ResponsesViaChat => {
                ResponsesViaChat::stream_for(client_request, client_model)
            }
        }
    }

    pub fn json_for(
        self,
        upstream: &[u8],
        client_request: &[u8],
        client_model: &str,
    ) -> Result<Bytes, String> {
        match self {
            Direction::MessagesViaResponses => {
                MessagesViaResponses::json_for(upstream, client_request, client_model)
            }
            Direction::ChatViaResponses => {
                ChatViaResponses::json_for(upstream, client_request, client_model)
            }
            Direction::ChatViaMessages => {
                ChatViaMessages::json_for(upstream, client_request, client_model)
            }
            Direction::ResponsesViaChat => {
                ResponsesViaChat::json_for(upstream, client_request, client_model)
            }
        }
    }
}

/// How one attempt speaks to its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// In the client's own API: the body is forwarded with the documented edits only.
    Native,
    Translated(Direction),
}

impl Route {
    /// The API the upstream is spoken to in.
    pub fn upstream(self, endpoint: Endpoint) -> Protocol {
        match self {
            Route::Native => endpoint.protocol(),
            Route::Translated(direction) => direction.upstream(),
        }
    }
}

/// The translations from one client API, in order of preference.
fn directions(endpoint: Endpoint) -> &'static [Direction] {
    match endpoint {
        Endpoint::Messages => &[Direction::MessagesViaResponses],
        Endpoint::Chat => &[Direction::ChatViaResponses, Direction::ChatViaMessages],
        Endpoint::Responses => &[Direction::ResponsesViaChat],
        // Compaction is the Codex backend's own; count_tokens is answered locally instead.
        Endpoint::Compact | Endpoint::CountTokens => &[],
    }
}

/// The upstream APIs that may serve a request to `endpoint`, the client's own first.
pub fn candidates(endpoint: Endpoint, translate: bool) -> &'static [Protocol] {
    const RESPONSES: &[Protocol] = &[Protocol::Responses];
    const CHAT: &[Protocol] = &[Protocol::Chat];
    const MESSAGES: &[Protocol] = &[Protocol::Messages];
    const RESPONSES_VIA: &[Protocol] = &[Protocol::Responses, Protocol::Chat];
    const CHAT_VIA: &[Protocol] = &[Protocol::Chat, Protocol::Responses, Protocol::Messages];
    const MESSAGES_VIA: &[Protocol] = &[Protocol::Messages, Protocol::Responses];
    match (endpoint, translate) {
        (Endpoint::Responses, true) => RESPONSES_VIA,
        (Endpoint::Chat, true) => CHAT_VIA,
        (Endpoint::Messages, true) => MESSAGES_VIA,
        (Endpoint::Responses | Endpoint::Compact, _) => RESPONSES,
        (Endpoint::Chat, false) => CHAT,
        (Endpoint::Messages | Endpoint::CountTokens, _) => MESSAGES,
    }
}

/// How `account` serves a request to `endpoint`: natively when it speaks the client's API,
/// else through the first direction it can take; `None` when it can do neither.
pub fn route(endpoint: Endpoint, account: &AccountSpec) -> Option<Route> {
    if account.speaks(endpoint.protocol()) {
        return Some(Route::Native);
    }
    directions(endpoint)
        .iter()
        .find(|d| account.speaks(d.upstream()))
        .map(|d| Route::Translated(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_translated_candidate_has_a_direction() {
        for endpoint in [
            Endpoint::Responses,
            Endpoint::Compact,
            Endpoint::Chat,
            Endpoint::Messages,
            Endpoint::CountTokens,
        ] {
            let all = candidates(endpoint, true);
            assert_eq!(
                all[0],
                endpoint.protocol(),
                "{endpoint:?}: the client's own first"
            );
            for p in &all[1..] {
                assert!(
                    directions(endpoint).iter().any(|d| d.upstream() == *p),
                    "{endpoint:?} via {p:?}"
                );
            }
            assert_eq!(candidates(endpoint, false), &[endpoint.protocol()]);
        }
    }
}
