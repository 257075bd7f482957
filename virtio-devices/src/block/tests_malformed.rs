//! Block tests with malformed chains (filled in next).
