//! Q.921 data link procedures (in progress).
