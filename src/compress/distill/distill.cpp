#include "squeeze/compress/distill/distill.h"

#include "squeeze/util/error.h"
#include "squeeze/util/params.h"
#include "squeeze/util/strings.h"

namespace squeeze::compress {

DistillPassOptions DistillPassOptions::from_params(Params& p) {
  DistillPassOptions o;
  if (p.has("student")) {
    o.student_key_path = p.key_path("student");
    o.student = train::model_spec_from_params(p, "student");
    if (o.student->zoo.empty())
      throw ConfigError(msg(o.student_key_path, ": a new student is a zoo architecture trained from scratch "
                            "({zoo: NAME, params: {...}}), got ", o.student->describe(),
                            "; to distill into a trained model, make it the workflow's model"));
  }
  o.distill = train::DistillOptions::from_params(p);
  return o;
}

std::optional<ir::Graph> Distill::make_student(const data::Splits* data, uint64_t seed) const {
  if (!options_.student) return std::nullopt;
  auto params = options_.student->params;
  if (data) models::fill_params_from_data(options_.student->zoo, params, data->sample_shape, data->num_classes);
  ir::Graph g = models::build(options_.student->zoo, params, seed, options_.student_key_path + ".params");
  if (options_.student->head_classes > 0)
    models::replace_head(g, options_.student->head_classes, seed, options_.student_key_path + ".head");
  return g;
}

PassResult Distill::run(const ir::Graph& graph, PassContext& ctx) {
  std::optional<ir::Graph> student = make_student(ctx.data, ctx.seed);
  if (!student) {
    return {graph.clone(), msg("distilling the current model from ", options_.distill.describe()), false};
  }
  const std::string summary =
      msg("new student ", options_.student->describe(), " (", with_commas(student->num_params()),
          " parameters, from scratch) distilled from ", options_.distill.describe());
  return {std::move(*student), summary, true};
}

}  // namespace squeeze::compress
