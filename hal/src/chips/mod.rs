pub mod si3215;
