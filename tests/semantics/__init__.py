"""Tests for ktapjit.semantics, the semantics every engine shares."""
