"""Format adapters: pure functions that turn a posted document into intake candidates."""
