// latentbridge: a ComfyUI setting that turns latentbridge's live previews on or off (the server keeps the choice
// until it restarts; LATENTBRIDGE_COMFY_PREVIEW=0 in the server's environment turns them off from the start).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const SETTING = "latentbridge.LivePreviews";

function send(enabled) {
  api.fetchApi("/latentbridge/live_preview", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ enabled: enabled !== false }),
  }).catch((error) => console.warn("latentbridge: live preview setting not sent", error));
}

app.registerExtension({
  name: "latentbridge.LivePreviews",
  settings: [
    {
      id: SETTING,
      category: ["latentbridge", "Live previews", "Enabled"],
      name: "latentbridge live previews (neural previewer, fitted factors, batch grid, video frames)",
      tooltip: "On: samplers' live previews come from latentbridge where it has a better previewer for the model. " +
        "Off: ComfyUI's own previews. The preview method (auto, latent2rgb, taesd, none) is still ComfyUI's setting.",
      type: "boolean",
      defaultValue: true,
      onChange: (value) => send(value),
    },
  ],
  async setup() {
    send(app.extensionManager?.setting?.get(SETTING) ?? app.ui.settings.getSettingValue(SETTING, true));
  },
});
