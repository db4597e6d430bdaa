//! [`EngineId`]: the typed identity of an engine, so code names engines by constant, not by
//! string literal.

use std::borrow::Cow;

/// Identity of an engine (`candle-cpu`, `coreml`, or a test engine's name). Compares equal to
/// its name as a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EngineId(Cow<'static, str>);

impl EngineId {
    /// The Candle CPU engine.
    pub const CANDLE_CPU: EngineId = EngineId(Cow::Borrowed("candle-cpu"));
    /// The Core ML engine.
    pub const COREML: EngineId = EngineId(Cow::Borrowed("coreml"));

    /// An id for any other engine (test engines, third-party backends).
    pub fn new(name: impl Into<String>) -> EngineId {
        EngineId(Cow::Owned(name.into()))
    }

    /// The engine's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for EngineId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for EngineId {
    fn from(name: &str) -> EngineId {
        EngineId::new(name)
    }
}

impl From<String> for EngineId {
    fn from(name: String) -> EngineId {
        EngineId::new(name)
    }
}

impl PartialEq<str> for EngineId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EngineId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_by_name() {
        assert_eq!(EngineId::CANDLE_CPU, "candle-cpu");
        assert_eq!(EngineId::from("coreml"), EngineId::COREML);
        assert_ne!(EngineId::new("noop"), EngineId::COREML);
        assert_eq!(EngineId::COREML.to_string(), "coreml");
    }
}
