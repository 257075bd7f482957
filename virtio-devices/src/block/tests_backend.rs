//! FileBackend tests (filled in next).
