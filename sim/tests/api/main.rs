//! Integration tests of the sim itself, over real HTTP on loopback: one binary, one module per area.

mod ai;
mod control;
mod echo;
mod faults;
mod graph;
mod handover;
mod helpers;
mod instagram;
mod load;
mod oauth;
