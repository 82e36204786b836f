//! Unit tests of the group state machine and record formats.
