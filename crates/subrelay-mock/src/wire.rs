//! The JSON shapes the mock writes, spelled as the OpenAI Responses API spells them.
//!
//! These are borrowed, serialize-only structs: an answer is written straight into its output
//! buffer without building `serde_json::Value` trees, because the mock is the baseline in
//! benchmarks. The fields beyond the ones subrelay reads (`tools`, `reasoning`, `text`, ...) are
//! here so that the official OpenAI Python SDK parses the answers as typed objects.

use serde::Serialize;

use crate::behavior::Usage;

/// An always-empty JSON array (`[]`).
pub(crate) type EmptyArray = [(); 0];

/// An always-empty JSON object (`{}`).
#[derive(Serialize)]
pub(crate) struct EmptyObject {}

/// A `response` object, as in the JSON answer and in stream events.
#[derive(Serialize)]
pub(crate) struct ResponseObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub background: bool,
    pub error: Option<ResponseError<'a>>,
    pub incomplete_details: Option<EmptyObject>,
    pub instructions: Option<&'a str>,
    pub max_output_tokens: Option<u64>,
    pub metadata: EmptyObject,
    pub model: &'a str,
    pub output: &'a [MessageItem<'a>],
    pub parallel_tool_calls: bool,
    pub previous_response_id: Option<&'a str>,
    pub reasoning: Reasoning,
    pub service_tier: &'static str,
    pub store: bool,
    pub temperature: f64,
    pub text: TextConfig,
    pub tool_choice: &'static str,
    pub tools: EmptyArray,
    pub top_p: f64,
    pub truncation: &'static str,
    pub usage: Option<UsageWire>,
    pub user: Option<&'a str>,
}

impl<'a> ResponseObject<'a> {
    /// A response with the usual defaults; callers set status, output, usage and error.
    pub(crate) fn new(id: &'a str, created_at: u64, model: &'a str, store: bool) -> Self {
        Self {
            id,
            object: "response",
            created_at,
            status: "in_progress",
            background: false,
            error: None,
            incomplete_details: None,
            instructions: None,
            max_output_tokens: None,
            metadata: EmptyObject {},
            model,
            output: &[],
            parallel_tool_calls: true,
            previous_response_id: None,
            reasoning: Reasoning {
                effort: None,
                summary: None,
            },
            service_tier: "default",
            store,
            temperature: 1.0,
            text: TextConfig {
                format: TextFormat { kind: "text" },
            },
            tool_choice: "auto",
            tools: [],
            top_p: 1.0,
            truncation: "disabled",
            usage: None,
            user: None,
        }
    }
}

/// `response.error` of a failed response.
#[derive(Serialize)]
pub(crate) struct ResponseError<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Reasoning {
    pub effort: Option<&'static str>,
    pub summary: Option<&'static str>,
}

#[derive(Serialize)]
pub(crate) struct TextConfig {
    pub format: TextFormat,
}

#[derive(Serialize)]
pub(crate) struct TextFormat {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// An assistant `message` output item.
#[derive(Serialize)]
pub(crate) struct MessageItem<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub status: &'static str,
    pub role: &'static str,
    pub content: &'a [OutputText<'a>],
}

/// An `output_text` content part.
#[derive(Serialize)]
pub(crate) struct OutputText<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: &'a str,
    pub annotations: EmptyArray,
    pub logprobs: EmptyArray,
}

impl<'a> OutputText<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            kind: "output_text",
            text,
            annotations: [],
            logprobs: [],
        }
    }
}

/// `response.usage`.
#[derive(Serialize)]
pub(crate) struct UsageWire {
    pub input_tokens: TokenCount,
    pub input_tokens_details: InputDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputDetails,
    pub total_tokens: u64,
}

/// A token count, or the wrong type where a count belongs (`Behavior::garbage_usage`).
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum TokenCount {
    Count(u64),
    Garbage(&'static str),
}

impl UsageWire {
    /// The usage a Responses answer reports under this behaviour.
    pub(crate) fn of(behavior: &crate::behavior::Behavior) -> Self {
        let mut wire = Self::from(behavior.usage_or_default());
        if behavior.garbage_usage {
            wire.input_tokens = TokenCount::Garbage("lots");
        }
        wire
    }
}

#[derive(Serialize)]
pub(crate) struct InputDetails {
    pub cached_tokens: u64,
    /// Required by the current API schema; the mock never writes to a cache.
    pub cache_write_tokens: u64,
}

#[derive(Serialize)]
pub(crate) struct OutputDetails {
    pub reasoning_tokens: u64,
}

impl From<Usage> for UsageWire {
    fn from(usage: Usage) -> Self {
        Self {
            input_tokens: TokenCount::Count(usage.input),
            input_tokens_details: InputDetails {
                cached_tokens: usage.cached,
                cache_write_tokens: 0,
            },
            output_tokens: usage.output,
            output_tokens_details: OutputDetails {
                reasoning_tokens: usage.reasoning,
            },
            total_tokens: usage.input.saturating_add(usage.output),
        }
    }
}

/// One server-sent event of a response stream; `type` is written first.
#[derive(Serialize)]
#[serde(tag = "type")]
pub(crate) enum Event<'a> {
    #[serde(rename = "response.created")]
    Created {
        sequence_number: u64,
        response: &'a ResponseObject<'a>,
    },
    #[serde(rename = "response.in_progress")]
    InProgress {
        sequence_number: u64,
        response: &'a ResponseObject<'a>,
    },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded {
        sequence_number: u64,
        output_index: u32,
        item: &'a MessageItem<'a>,
    },
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: &'a OutputText<'a>,
    },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        delta: &'a str,
        logprobs: EmptyArray,
    },
    #[serde(rename = "response.output_text.done")]
    OutputTextDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        text: &'a str,
        logprobs: EmptyArray,
    },
    #[serde(rename = "response.content_part.done")]
    ContentPartDone {
        sequence_number: u64,
        item_id: &'a str,
        output_index: u32,
        content_index: u32,
        part: &'a OutputText<'a>,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone {
        sequence_number: u64,
        output_index: u32,
        item: &'a MessageItem<'a>,
    },
    #[serde(rename = "response.completed")]
    Completed {
        sequence_number: u64,
        response: &'a ResponseObject<'a>,
    },
    #[serde(rename = "response.failed")]
    Failed {
        sequence_number: u64,
        response: &'a ResponseObject<'a>,
    },
}

impl Event<'_> {
    /// The event type, also written on the `event:` line.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "response.created",
            Self::InProgress { .. } => "response.in_progress",
            Self::OutputItemAdded { .. } => "response.output_item.added",
            Self::ContentPartAdded { .. } => "response.content_part.added",
            Self::OutputTextDelta { .. } => "response.output_text.delta",
            Self::OutputTextDone { .. } => "response.output_text.done",
            Self::ContentPartDone { .. } => "response.content_part.done",
            Self::OutputItemDone { .. } => "response.output_item.done",
            Self::Completed { .. } => "response.completed",
            Self::Failed { .. } => "response.failed",
        }
    }
}

/// The answer of `/responses/compact`.
#[derive(Serialize)]
pub(crate) struct Compaction<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: u64,
    pub output: (RetainedMessage<'a>, CompactionItem<'a>),
    pub usage: UsageWire,
}

/// A user message the compaction keeps verbatim.
#[derive(Serialize)]
pub(crate) struct RetainedMessage<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub content: [InputText<'a>; 1],
}

#[derive(Serialize)]
pub(crate) struct InputText<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: &'a str,
}

/// The opaque summary item clients send back in later `input`.
#[derive(Serialize)]
pub(crate) struct CompactionItem<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub encrypted_content: &'a str,
}
