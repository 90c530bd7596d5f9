//! `POST /process` on real photos: sizes, formats, parallel requests.

use image::GenericImageView;

use crate::util::{corpus, multipart_body, TestServer, KEY};

const PHOTO: &str = "photos/harvesters_1165x859.jpg";

#[test]
fn readme_curl_example_returns_png_of_right_size() {
    let server = TestServer::start(&[]);
    let photo = corpus(PHOTO);
    let reply = server.process("w=800&h=600", &photo);
    let image = reply.image();
    assert_eq!(reply.header("content-type"), Some("image/png"));
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    // 1165x859 fitted inside 800x600 keeps the aspect ratio: 800 x 590.
    assert_eq!(image.dimensions(), (800, 590));
}

#[test]
fn width_and_height_combinations() {
    let server = TestServer::start(&[]);
    let photo = corpus(PHOTO);
    let cases = [
        ("w=300", (300, 221)),
        ("h=100", (136, 100)),
        ("w=300&h=300", (300, 221)),
        ("w=2000&h=100", (136, 100)),
        ("", (1165, 859)),
    ];
    for (query, expected) in cases {
        let reply = server.process(query, &photo);
        assert_eq!(reply.image().dimensions(), expected, "query {query:?}");
    }
}

#[test]
fn portrait_photo_keeps_aspect() {
    let server = TestServer::start(&[]);
    let reply = server.process("w=600", &corpus("photos/portrait_1200x1800.jpg"));
    assert_eq!(reply.image().dimensions(), (600, 900));
}

#[test]
fn format_is_sniffed_from_bytes_not_name() {
    let server = TestServer::start(&[]);
    // A PNG named .jpg, sent with a JPEG part type.
    let png = corpus("malformed/png_content_named.jpg");
    let reply = server.process("w=16", &png);
    assert_eq!(reply.image().dimensions(), (16, 16));
}

#[test]
fn each_input_format_decodes() {
    let server = TestServer::start(&[]);
    let inputs = [
        ("jpeg/baseline_testorig.jpg", (227, 149)),
        ("jpeg/progressive_peacock.jpg", (100, 75)),
        ("png/basn2c08_rgb8.png", (32, 32)),
        ("gif/transparent_alpha_gif_a.gif", (256, 256)),
        ("webp/lossy_harvesters.webp", (1165, 859)),
        ("bmp/rgb24.bmp", (127, 64)),
        ("tiff/lzw_predictor_rgba.tiff", (32, 32)),
    ];
    for (path, size) in inputs {
        let reply = server.process("", &corpus(path));
        assert_eq!(reply.image().dimensions(), size, "{path}");
    }
}

#[test]
fn parallel_requests_all_succeed() {
    let server = TestServer::start(&[("IMGFLUX_WORKERS", "2")]);
    let photo = corpus(PHOTO);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let server = &server;
                let photo = &photo;
                scope.spawn(move || {
                    let width = 100 + i * 10;
                    let reply = server.process(&format!("w={width}"), photo);
                    (width, reply.image().width())
                })
            })
            .collect();
        for handle in handles {
            let (asked, got) = handle.join().unwrap();
            assert_eq!(asked, got);
        }
    });
}

#[test]
fn other_fields_beside_image_are_ignored() {
    let server = TestServer::start(&[]);
    let photo = corpus("jpeg/baseline_testorig.jpg");
    let (content_type, body) =
        multipart_body(&[("note", None, b"hello"), ("image", Some("a.jpg"), &photo)]);
    let reply = server.post("/process?w=100", Some(KEY), &content_type, &body, &[]);
    assert_eq!(reply.image().dimensions(), (100, 66));
}

#[test]
fn success_reply_carries_request_id_and_server_timing() {
    let server = TestServer::start(&[]);
    let reply = server.process("w=50", &corpus("jpeg/baseline_testorig.jpg"));
    assert_eq!(reply.status, 200);
    let timing = reply.header("server-timing").expect("no Server-Timing");
    for stage in ["read;dur=", "decode;dur=", "transform;dur=", "encode;dur="] {
        assert!(timing.contains(stage), "{timing}");
    }
    let id = reply.header("x-request-id").expect("no X-Request-Id");
    server.wait_for_log(&format!(
        "request id={id} method=POST path=/process status=200"
    ));
}

#[test]
fn request_log_line_has_sizes_and_never_the_key() {
    let server = TestServer::start(&[]);
    let reply = server.process("w=80", &corpus("jpeg/baseline_testorig.jpg"));
    assert_eq!(reply.status, 200);
    let log = server.wait_for_log("path=/process status=200");
    let line = log
        .lines()
        .find(|l| l.contains("path=/process status=200"))
        .expect("no request line");
    assert!(line.contains("input=227x149"), "{line}");
    assert!(line.contains("output=80x53"), "{line}");
    assert!(line.contains("bytes_in="), "{line}");
    assert!(line.contains("total_ms="), "{line}");
    assert!(!log.contains(KEY), "the key appears in the log");
}

/// Runs the README's curl command; the 2.9 MB photo makes curl send
/// `Expect: 100-continue` first.
#[test]
fn curl_example_from_readme_works() {
    let server = TestServer::start_with_env(&[]);
    let photo = crate::util::shared_dir().join("bench-images/photo-12mp-4032x3024.jpg");
    let output = std::env::temp_dir().join(format!("imgflux-curl-{}.png", std::process::id()));
    let status = std::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            "x-api-key: rust_is_fast_123",
            "-X",
            "POST",
            "-F",
        ])
        .arg(format!("image=@{}", photo.display()))
        .arg(format!("http://{}/process?w=800&h=600", server.address))
        .arg("--output")
        .arg(&output)
        .status()
        .expect("running curl failed");
    assert!(status.success());
    let bytes = std::fs::read(&output).unwrap();
    std::fs::remove_file(&output).unwrap();
    let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
    assert_eq!(image.dimensions(), (800, 600));
}

#[test]
fn reused_buffers_match_fresh_server() {
    // One worker, so each request reuses the buffers the previous one left.
    // Debug builds fill each buffer handed out with a different byte, so a
    // pixel that is not written would differ from the fresh server's.
    let cases = [
        ("photos/portrait_1200x1800.jpg", "w=500"),
        ("png/basi6a08_interlaced_rgba.png", "w=20"),
        ("jpeg/baseline_testorig.jpg", "w=100&format=jpeg"),
        (PHOTO, "w=300&h=300&fit=cover"),
    ];
    let reused = TestServer::start(&[("IMGFLUX_WORKERS", "1")]);
    for (path, query) in cases {
        let image = corpus(path);
        let with_reuse = reused.process(query, &image);
        assert_eq!(with_reuse.status, 200, "{path}: {}", with_reuse.describe());

        let fresh = TestServer::start(&[("IMGFLUX_WORKERS", "1")]).process(query, &image);
        assert_eq!(fresh.status, 200, "{path}: {}", fresh.describe());
        assert!(
            with_reuse.body == fresh.body,
            "{path} {query}: outputs differ"
        );
    }
}
