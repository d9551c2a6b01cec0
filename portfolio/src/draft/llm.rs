//! Drafts from an OpenAI-compatible chat-completions endpoint.
//!
//! Order of attempts, all within one deadline ([`LlmConfig::timeout`]):
//! 1. `response_format: json_schema` (strict) with [`prompt::answer_schema`];
//! 2. on an error status other than 429/5xx (servers without schema
//!    support answer 400), a refusal, or output that is not the JSON asked
//!    for: `response_format: json_object` with the same messages;
//! 3. on anything else, or when the deadline passes: the offline drafter.
//!
//! 429 and 5xx are retried with exponential backoff (`retry_base` ×
//! 2ⁿ, at most `max_retries` times) inside each step; when retries run out
//! the next step is tried. At most `max_concurrent` drafts talk to the
//! endpoint at once. Every step is written to [`Drafted::notes`].

use std::sync::Arc;
use std::time::Duration;

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequestArgs, FinishReason, ResponseFormat, ResponseFormatJsonSchema,
};
use async_openai::Client;
use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{prompt, sanitize_text, DraftText, Drafted, DraftedBy, Drafter, OfflineDrafter};
use crate::facts::Facts;

/// Where and how to ask a model. The API key is passed in by the caller
/// (a BytePort secret or the environment); it is sent only as the
/// `Authorization` header, never in a message.
#[derive(Clone)]
pub struct LlmConfig {
    /// Base URL of the API including `/v1`, e.g. `https://api.openai.com/v1`,
    /// `http://127.0.0.1:11434/v1` (Ollama), `http://127.0.0.1:8080/v1`
    /// (llama-server, vLLM). Config key `llm_base_url`.
    pub base_url: String,
    /// Model name. Config key `llm_model`.
    pub model: String,
    /// API key, if the endpoint needs one.
    pub api_key: Option<String>,
    /// Deadline for one draft, all attempts together (default 60 s).
    /// Config key `llm_timeout_secs`.
    pub timeout: Duration,
    /// Retries per step on 429/5xx (default 3).
    pub max_retries: u32,
    /// First backoff; doubles per retry (default 500 ms).
    pub retry_base: Duration,
    /// Drafts talking to the endpoint at once (default 2). Config key
    /// `llm_max_concurrent`.
    pub max_concurrent: usize,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_base", &self.retry_base)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

impl LlmConfig {
    /// Defaults for everything but the endpoint and model.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        LlmConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(60),
            max_retries: 3,
            retry_base: Duration::from_millis(500),
            max_concurrent: 2,
        }
    }
}

/// The LLM drafter; see the module docs.
pub struct LlmDrafter {
    config: LlmConfig,
    client: Client<OpenAIConfig>,
    permits: Arc<Semaphore>,
}

/// How one step ended.
enum StepError {
    /// Try the next response format.
    NextFormat(String),
    /// Give up on the model.
    GiveUp(String),
}

#[derive(serde::Deserialize)]
struct Answer {
    title: String,
    summary: String,
    body: String,
    tags: Vec<String>,
}

impl LlmDrafter {
    /// A drafter for `config`.
    pub fn new(config: LlmConfig) -> Self {
        let mut openai = OpenAIConfig::new().with_api_base(config.base_url.trim_end_matches('/'));
        // Without a key async-openai would send `Bearer ` with nothing;
        // local servers ignore it, so any placeholder is harmless.
        openai = openai.with_api_key(config.api_key.clone().unwrap_or_else(|| "none".into()));
        // A plain reqwest service: async-openai's default executor has its
        // own retry layer, which would retry under ours (4 × 4 requests on
        // a failing server) and hide what happened from the notes.
        let http = ReqwestService::new(reqwest_client());
        LlmDrafter {
            permits: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            client: Client::with_config(openai).with_http_service(http),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    async fn draft_async(&self, facts: &Facts) -> Drafted {
        let mut notes = Vec::new();
        let Ok(_permit) = self.permits.acquire().await else {
            return fallback(facts, notes, "the drafter is shutting down".into());
        };
        let deadline = Instant::now() + self.config.timeout;
        for format in ["json_schema", "json_object"] {
            match self.step(facts, format, deadline, &mut notes).await {
                Ok(text) => {
                    return Drafted {
                        text: sanitize_text(&text, facts),
                        by: DraftedBy::Model {
                            model: self.config.model.clone(),
                            response_format: format.into(),
                        },
                        notes,
                    }
                }
                Err(StepError::NextFormat(why)) => {
                    notes.push(format!("{format}: {why}"));
                }
                Err(StepError::GiveUp(why)) => {
                    notes.push(format!("{format}: {why}"));
                    return fallback(facts, notes, why);
                }
            }
        }
        fallback(
            facts,
            notes,
            "no response format gave a usable draft".into(),
        )
    }

    /// One response format, with retries on 429/5xx.
    async fn step(
        &self,
        facts: &Facts,
        format: &str,
        deadline: Instant,
        notes: &mut Vec<String>,
    ) -> Result<DraftText, StepError> {
        let response_format = if format == "json_schema" {
            ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: Some("A portfolio entry".into()),
                    name: "portfolio_entry".into(),
                    schema: prompt::answer_schema(),
                    strict: Some(true),
                },
            }
        } else {
            ResponseFormat::JsonObject
        };
        let request = CreateChatCompletionRequestArgs::default()
            .model(self.config.model.clone())
            .messages(vec![
                ChatCompletionRequestSystemMessage::from(prompt::system_message()).into(),
                ChatCompletionRequestUserMessage::from(prompt::user_message(facts)).into(),
            ])
            .response_format(response_format)
            .build()
            .map_err(|e| StepError::GiveUp(format!("building the request: {e}")))?;

        let mut attempt = 0u32;
        loop {
            let chat = self.client.chat();
            let call = chat.create(request.clone());
            let result = match tokio::time::timeout_at(deadline, call).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(StepError::GiveUp(format!(
                        "timeout: no answer within {:.1} s",
                        self.config.timeout.as_secs_f64()
                    )))
                }
            };
            let response = match result {
                Ok(r) => r,
                Err(OpenAIError::ApiError(api)) => {
                    let status = api.status_code.as_u16();
                    let retryable = status == 429 || (500..600).contains(&status);
                    if retryable && attempt < self.config.max_retries {
                        let wait = self.config.retry_base * 2u32.pow(attempt);
                        attempt += 1;
                        if Instant::now() + wait >= deadline {
                            return Err(StepError::GiveUp(format!(
                                "HTTP {status}; no time left to retry"
                            )));
                        }
                        notes.push(format!(
                            "{format}: HTTP {status}, retry {attempt} in {} ms",
                            wait.as_millis()
                        ));
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    let message = short(&api.api_error.message);
                    return Err(if retryable {
                        StepError::NextFormat(format!(
                            "HTTP {status} after {} retries: {message}",
                            self.config.max_retries
                        ))
                    } else {
                        // 400 and friends: most likely no schema support.
                        StepError::NextFormat(format!("HTTP {status}: {message}"))
                    });
                }
                Err(OpenAIError::JSONDeserialize(e, _)) => {
                    return Err(StepError::NextFormat(format!(
                        "the response is not a chat completion: {e}"
                    )))
                }
                Err(e) => {
                    return Err(StepError::GiveUp(format!(
                        "request failed: {}",
                        short(&e.to_string())
                    )))
                }
            };
            let Some(choice) = response.choices.into_iter().next() else {
                return Err(StepError::NextFormat("the answer has no choices".into()));
            };
            if let Some(refusal) = choice.message.refusal.filter(|r| !r.trim().is_empty()) {
                return Err(StepError::NextFormat(format!(
                    "the model refused: {}",
                    short(&refusal)
                )));
            }
            if choice.finish_reason == Some(FinishReason::ContentFilter) {
                return Err(StepError::NextFormat(
                    "the answer was withheld by a content filter".into(),
                ));
            }
            let content = choice.message.content.unwrap_or_default();
            return parse_answer(&content).map_err(StepError::NextFormat);
        }
    }
}

impl Drafter for LlmDrafter {
    fn draft<'a>(&'a self, facts: &'a Facts) -> BoxFuture<'a, Drafted> {
        Box::pin(self.draft_async(facts))
    }
}

fn fallback(facts: &Facts, mut notes: Vec<String>, why: String) -> Drafted {
    notes.push(format!("fell back to the offline drafter: {why}"));
    let mut drafted = OfflineDrafter.draft_sync(facts);
    drafted.notes = notes;
    drafted
}

fn short(s: &str) -> String {
    super::sanitize::cap(&s.split_whitespace().collect::<Vec<_>>().join(" "), 200)
}

/// Checks the model's answer against the schema (types and required
/// fields; lengths are capped afterwards by sanitizing).
pub(crate) fn parse_answer(content: &str) -> Result<DraftText, String> {
    let trimmed = content.trim();
    // Some servers wrap JSON mode answers in a Markdown fence.
    let unfenced = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or(trimmed)
        .trim();
    if unfenced.is_empty() {
        return Err("the answer is empty".into());
    }
    let answer: Answer = serde_json::from_str(unfenced)
        .map_err(|e| format!("the answer is not the JSON asked for: {e}"))?;
    if answer.title.trim().is_empty()
        || answer.summary.trim().is_empty()
        || answer.body.trim().is_empty()
    {
        return Err("the answer has an empty title, summary or body".into());
    }
    Ok(DraftText {
        title: answer.title,
        summary: answer.summary,
        body: answer.body,
        tags: answer.tags,
    })
}

/// No proxies from the environment (drafts go where configured, nowhere
/// else), bounded connect time.
fn reqwest_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_schema_checked() {
        assert!(parse_answer(r#"{"title":"T","summary":"S","body":"B","tags":["a"]}"#).is_ok());
        assert!(parse_answer(
            "```json\n{\"title\":\"T\",\"summary\":\"S\",\"body\":\"B\",\"tags\":[]}\n```"
        )
        .is_ok());
        assert!(parse_answer(r#"{"title":"T","summary":"S"}"#)
            .unwrap_err()
            .contains("not the JSON"));
        assert!(parse_answer(r#"{"title":"","summary":"S","body":"B","tags":[]}"#).is_err());
        assert!(parse_answer("Sure! Here is your entry").is_err());
        assert!(parse_answer(r#"{"title":1,"summary":"S","body":"B","tags":[]}"#).is_err());
    }
}
