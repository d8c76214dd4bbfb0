// Builds small ONNX models in memory for the importer/exporter tests.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "io/onnx_internal.h"

namespace squeeze::testing {

// Node count per op type of an ONNX file.
inline std::map<std::string, int> op_counts(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  onnx::ModelProto m;
  EXPECT_TRUE(m.ParseFromIstream(&f));
  std::map<std::string, int> counts;
  for (const auto& n : m.graph().node()) ++counts[n.op_type()];
  return counts;
}

class OnnxMaker {
 public:
  explicit OnnxMaker(int64_t opset = 13) {
    m_.set_ir_version(opset >= 13 ? 7 : 6);
    auto* o = m_.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    m_.mutable_graph()->set_name("test");
  }
  // dims: -1 = symbolic "N".
  OnnxMaker& input(const std::string& name, const std::vector<int64_t>& dims,
                   int32_t type = onnx::TensorProto::FLOAT) {
    auto* vi = m_.mutable_graph()->add_input();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(type);
    auto* sh = tt->mutable_shape();
    for (auto d : dims) {
      if (d < 0)
        sh->add_dim()->set_dim_param("N");
      else
        sh->add_dim()->set_dim_value(d);
    }
    return *this;
  }
  OnnxMaker& output(const std::string& name, int32_t type = onnx::TensorProto::FLOAT) {
    auto* vi = m_.mutable_graph()->add_output();
    vi->set_name(name);
    vi->mutable_type()->mutable_tensor_type()->set_elem_type(type);
    return *this;
  }
  OnnxMaker& init(const std::string& name, const at::Tensor& t) {
    auto* p = m_.mutable_graph()->add_initializer();
    io::onnx_detail::tensor_to_proto(t, p);
    p->set_name(name);
    return *this;
  }
  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& in,
                        const std::vector<std::string>& out, const std::string& name = "") {
    auto* n = m_.mutable_graph()->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : in) n->add_input(i);
    for (const auto& o : out) n->add_output(o);
    return n;
  }
  static void attr(onnx::NodeProto* n, const std::string& k, int64_t v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr(onnx::NodeProto* n, const std::string& k, double v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }
  static void attr(onnx::NodeProto* n, const std::string& k, const std::vector<int64_t>& v) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
  }
  std::string bytes() const {
    std::string s;
    m_.SerializeToString(&s);
    return s;
  }
  onnx::ModelProto& model() { return m_; }

 private:
  onnx::ModelProto m_;
};

}  // namespace squeeze::testing
