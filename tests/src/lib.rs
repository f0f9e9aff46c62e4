//! `pwt-tests`: tests that span crates or check the workspace itself (the layering table
//! of ARCHITECTURE.md). Tests against the real services join them as provisioning lands.
