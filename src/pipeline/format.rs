//! Output format selection.
//!
//! An explicit `format` is obeyed. `format=auto` returns the input's own
//! format where ImgFlux writes it (JPEG, PNG, GIF, WebP) and PNG for BMP and
//! TIFF, which are lossless. The one exception is JPEG input. JPEG files
//! are photographs, where lossy WebP at the same quality is usually smaller,
//! so a client whose `Accept` lists `image/webp` gets WebP. Other inputs may be
//! graphics with sharp edges or alpha, where lossy WebP would not be a safe
//! swap, so they keep their format.
//!
//! For `auto` on a JPEG, the reply depends on `Accept` whichever format is
//! chosen, so both answers carry `Vary: Accept`.

use crate::error::ApiError;
use crate::options::FormatRequest;

use super::{Context, InputFormat, OutputFormat};

/// Stage: sets the output format and whether it varies on `Accept`.
pub fn stage(context: &mut Context<'_>) -> Result<(), ApiError> {
    let (format, varies_on_accept) = select(
        context.job.options.format,
        context.input_format,
        context.job.accept_webp,
    );
    context.output_format = format;
    context.varies_on_accept = varies_on_accept;
    Ok(())
}

/// Returns the output format and whether the choice depended on `Accept`.
pub fn select(
    request: FormatRequest,
    input: InputFormat,
    accept_webp: bool,
) -> (OutputFormat, bool) {
    match request {
        FormatRequest::Png => (OutputFormat::Png, false),
        FormatRequest::Jpeg => (OutputFormat::Jpeg, false),
        FormatRequest::Webp => (OutputFormat::Webp, false),
        FormatRequest::Gif => (OutputFormat::Gif, false),
        FormatRequest::Auto => match input {
            InputFormat::Jpeg if accept_webp => (OutputFormat::Webp, true),
            InputFormat::Jpeg => (OutputFormat::Jpeg, true),
            InputFormat::Png | InputFormat::Bmp | InputFormat::Tiff => (OutputFormat::Png, false),
            InputFormat::Gif => (OutputFormat::Gif, false),
            InputFormat::Webp => (OutputFormat::Webp, false),
        },
    }
}

/// Returns whether an animated input keeps its animation in `output`.
///
/// GIF and WebP are the animated formats ImgFlux writes; every other output
/// gets the first frame.
pub fn keeps_animation(output: OutputFormat) -> bool {
    matches!(output, OutputFormat::Gif | OutputFormat::Webp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_format_is_obeyed() {
        let cases = [
            (FormatRequest::Png, OutputFormat::Png),
            (FormatRequest::Jpeg, OutputFormat::Jpeg),
            (FormatRequest::Webp, OutputFormat::Webp),
            (FormatRequest::Gif, OutputFormat::Gif),
        ];
        for (request, expected) in cases {
            for accept_webp in [false, true] {
                let chosen = select(request, InputFormat::Jpeg, accept_webp);
                assert_eq!(
                    chosen,
                    (expected, false),
                    "{request:?}, accept_webp={accept_webp}"
                );
            }
        }
    }

    #[test]
    fn auto_keeps_input_format() {
        let cases = [
            (InputFormat::Png, OutputFormat::Png),
            (InputFormat::Gif, OutputFormat::Gif),
            (InputFormat::Webp, OutputFormat::Webp),
            (InputFormat::Bmp, OutputFormat::Png),
            (InputFormat::Tiff, OutputFormat::Png),
        ];
        for (input, expected) in cases {
            for accept_webp in [false, true] {
                let chosen = select(FormatRequest::Auto, input, accept_webp);
                assert_eq!(
                    chosen,
                    (expected, false),
                    "{input:?}, accept_webp={accept_webp}"
                );
            }
        }
    }

    #[test]
    fn auto_jpeg_depends_on_accept() {
        let with_webp = select(FormatRequest::Auto, InputFormat::Jpeg, true);
        assert_eq!(with_webp, (OutputFormat::Webp, true));
        let without_webp = select(FormatRequest::Auto, InputFormat::Jpeg, false);
        assert_eq!(without_webp, (OutputFormat::Jpeg, true));
    }
}
