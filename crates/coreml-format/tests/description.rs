//! Feature descriptions built in memory: images, flexible shapes, unsupported types.

use std::path::Path;

use coreml_format::proto as pb;
use coreml_format::{MlModel, ModelType, WeightStore};
use inference_api::{DType, Dim, FeatureKind, ImageFormat};
use prost::Message;

fn feature(name: &str, t: pb::feature_type::Type) -> pb::FeatureDescription {
    pb::FeatureDescription {
        name: name.into(),
        short_description: format!("the {name}"),
        r#type: Some(pb::FeatureType { is_optional: false, r#type: Some(t) }),
    }
}

fn open(inputs: Vec<pb::FeatureDescription>, outputs: Vec<pb::FeatureDescription>) -> MlModel {
    let spec = pb::Model {
        specification_version: 4,
        description: Some(pb::ModelDescription {
            input: inputs,
            output: outputs,
            metadata: Some(pb::Metadata {
                author: "me".into(),
                license: "MIT".into(),
                version_string: "1.2".into(),
                short_description: "test".into(),
                user_defined: [("k".to_string(), "v".to_string())].into(),
            }),
            ..Default::default()
        }),
        r#type: Some(pb::model::Type::NeuralNetwork(Default::default())),
        ..Default::default()
    };
    MlModel::from_spec_bytes(&spec.encode_to_vec(), Path::new("mem.mlmodel"), WeightStore::new("."))
        .expect("open")
}

#[test]
fn image_and_flexible_shapes() {
    use pb::array_feature_type::{ArrayDataType, ShapeFlexibility, ShapeRange};
    use pb::image_feature_type::{ColorSpace, ImageSizeRange, SizeFlexibility};
    let image = pb::ImageFeatureType {
        width: 224,
        height: 200,
        color_space: ColorSpace::Bgr as i32,
        size_flexibility: Some(SizeFlexibility::ImageSizeRange(ImageSizeRange {
            width_range: Some(pb::SizeRange { lower_bound: 64, upper_bound: -1 }),
            height_range: Some(pb::SizeRange { lower_bound: 200, upper_bound: 200 }),
        })),
    };
    let array = pb::ArrayFeatureType {
        shape: vec![1, 10],
        data_type: ArrayDataType::Float16 as i32,
        shape_flexibility: Some(ShapeFlexibility::ShapeRange(ShapeRange {
            size_ranges: vec![
                pb::SizeRange { lower_bound: 1, upper_bound: 1 },
                pb::SizeRange { lower_bound: 1, upper_bound: 512 },
            ],
        })),
        default_optional_value: None,
    };
    let m = open(
        vec![feature("img", pb::feature_type::Type::ImageType(image))],
        vec![feature("out", pb::feature_type::Type::MultiArrayType(array))],
    );
    assert_eq!(m.model_type(), ModelType::NeuralNetwork { flavor: String::new() });
    assert_eq!(m.spec_version(), 4);
    assert_eq!(m.metadata().author, "me");
    assert_eq!(m.metadata().user_defined.get("k").map(String::as_str), Some("v"));
    let s = m.io_schema().expect("schema");
    let img = &s.inputs[0];
    assert_eq!(img.kind, FeatureKind::Image { width: 224, height: 200, format: ImageFormat::Bgr });
    assert_eq!(img.dtype, DType::U8);
    assert_eq!(
        img.shape,
        [Dim::Fixed(200), Dim::Range { min: 64, max: None }, Dim::Fixed(3)],
        "images are [height, width, channels] on every engine (issue 10)"
    );
    let out = &s.outputs[0];
    assert_eq!(out.dtype, DType::F16);
    assert_eq!(out.shape, [Dim::Fixed(1), Dim::Range { min: 1, max: Some(512) }]);
    assert!(m.main_function().is_err(), "not an ML Program");
    assert_eq!(m.summary().model_type, "neuralNetwork");
}

#[test]
fn non_tensor_features_are_described_but_not_in_the_schema() {
    let m = open(
        vec![feature("text", pb::feature_type::Type::StringType(Default::default()))],
        vec![feature("n", pb::feature_type::Type::Int64Type(Default::default()))],
    );
    assert_eq!(m.inputs()[0].type_name, "string");
    assert!(m.inputs()[0].spec.is_none());
    assert_eq!(m.outputs()[0].spec.as_ref().map(|s| s.dtype), Some(DType::I64));
    let e = m.io_schema().expect_err("string input");
    assert!(e.to_string().contains("`text`") && e.to_string().contains("mem.mlmodel"), "{e}");
}
