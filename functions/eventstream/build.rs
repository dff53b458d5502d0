//! `sqlx::migrate!` embeds the migrations at build time; without this, a new migration file
//! would not rebuild the crate and `eventstream-admin migrate` would skip it.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
