//! Small, real files of each binary format, built by the tests themselves (nothing is checked in).

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// A PDF from object bodies (object `i + 1` is `objects[i]`), with a correct cross-reference table. Object 1 must be
/// the catalog; `trailer_extra` is added to the trailer dictionary (e.g. `/Info 5 0 R`).
pub(crate) fn pdf_from_objects(objects: &[String], trailer_extra: &str) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (index, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", index + 1).as_bytes());
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        table.push_str(&format!("{offset:010} 00000 n \n"));
    }
    out.extend_from_slice(table.as_bytes());
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R {trailer_extra} >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1)
            .as_bytes(),
    );
    out
}

/// A stream object body with the right `/Length`.
pub(crate) fn stream(dict_extra: &str, content: &str) -> String {
    format!("<< /Length {} {dict_extra} >>\nstream\n{content}\nendstream", content.len())
}

/// A PDF whose pages show the given strings in Helvetica (one `Tj` per page), titled "Fixture Title".
pub(crate) fn text_pdf(pages: &[&str]) -> Vec<u8> {
    // 1 catalog, 2 page tree, 3 font, 4 info, then a page and its content stream per page.
    let kids: Vec<String> = (0..pages.len()).map(|i| format!("{} 0 R", 5 + 2 * i)).collect();
    let mut objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
        "<< /Title (Fixture Title) /Producer (dossier tests) >>".to_owned(),
    ];
    for (i, text) in pages.iter().enumerate() {
        let content_id = 6 + 2 * i;
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> \
             /Contents {content_id} 0 R >>"
        ));
        objects.push(stream("", &format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET")));
    }
    pdf_from_objects(&objects, "/Info 4 0 R")
}

/// A one-page PDF that only paints an image: what a scanner produces.
pub(crate) fn image_only_pdf() -> Vec<u8> {
    let objects = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << /Im1 5 0 R >> >> \
         /Contents 4 0 R >>"
            .to_owned(),
        stream("", "q 612 0 0 792 0 0 cm /Im1 Do Q"),
        stream("/Type /XObject /Subtype /Image /Width 2 /Height 1 /ColorSpace /DeviceGray /BitsPerComponent 8", "AB"),
    ];
    pdf_from_objects(&objects, "")
}

/// A ZIP archive of `(name, content)` entries, deflated as Word does.
pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, content) in entries {
        writer.start_file(*name, options).unwrap();
        writer.write_all(content).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A minimal DOCX: `[Content_Types].xml`, the package relationships, `word/document.xml` with `body` as the content
/// of `<w:body>`, and a core-properties part titled `title` when given.
pub(crate) fn docx(body: &str, title: Option<&str>) -> Vec<u8> {
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"><w:body>{body}<w:sectPr/></w:body></w:document>"#
    );
    let content_types = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    let rels = r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;
    let core = title.map(|title| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title></cp:coreProperties>"#
        )
    });
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", content_types.as_bytes()),
        ("_rels/.rels", rels.as_bytes()),
        ("word/document.xml", document.as_bytes()),
    ];
    if let Some(core) = &core {
        entries.push(("docProps/core.xml", core.as_bytes()));
    }
    zip_of(&entries)
}
