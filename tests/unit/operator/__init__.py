"""Unit tests of the operator core: pure code, no network, milliseconds each."""
