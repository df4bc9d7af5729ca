/**
 * The API layer's accepted body forms that the bulk lane (src/lane, below this layer) runs:
 * batch bodies naming a `feature_service`, and Feast's write and push frames. Given to the lane
 * by the app (jobs run on the serving thread with `BULK_WORKERS=0`) and by the worker's entry.
 */
import type { LaneOptions } from "../../lane/pool.ts";
import { feastWriteForms } from "./feast/index.ts";
import { batchByService } from "./service-forms.ts";

export const laneForms: Pick<LaneOptions, "normaliseBatch" | "writeForms"> = { normaliseBatch: batchByService, writeForms: feastWriteForms };
