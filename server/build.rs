// `sqlx::migrate!` embeds the migrations when compiling; a new or edited
// file must rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
