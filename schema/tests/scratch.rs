#[test]
fn scratch() {
    println!("{}", serde_json::to_string_pretty(&schema::json_schema()).unwrap());
    let cases = [
        "remote:\n  url: http://x\n  tokn: a\n",
        "a: [1\n",
        "a: 1\na: 2\n",
        "remote: {url: http://x, token: a}\ncollections:\n  x:\n    fields: {a: int}\n",
        "remote: {url: http://x, token: a}\ncollections:\n  x:\n    page_size: abc\n    fields: {a: string}\n",
        "remote: {url: http://x, token: a}\ncollections:\n  x:\n    fields: {a: string}\n  y: \n",
        "\t- x",
        "remote: {url: http://x, token: a}\ncollections:\n  x:\n    fields: [a]\n",
        "remote: {url: http://x, token: a}\ncollections:\n  x: &a\n    fields: {a: string}\n  y: *a\n",
        "remote: {url: http://x, token: a}\ncollections:\n  x:\n    fields: {a: string}\n    filter: {a: 1e999}\n",
    ];
    for c in cases {
        match schema::Config::from_yaml_str(c, None) {
            Ok(cfg) => println!("OK {cfg:?}"),
            Err(e) => println!("{:?} {e}", e.kind()),
        }
    }
}
