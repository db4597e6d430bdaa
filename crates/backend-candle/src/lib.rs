//! The Candle CPU engine.
