// The merchandiser console: rules, ranking weights, preview (before/after), explain, A/B tests,
// search analytics and version history, all through the admin API with the key the
// merchandiser signs in with (kept in this tab's sessionStorage, never in the page).
"use strict";

(() => {
    const { api, ApiError, el, fill, barChart, intervalChart, percent } = PS;

    const KEY_STORAGE = "productsearch.adminKey";
    const $ = (id) => document.getElementById(id);
    const state = { version: null, weights: null, tab: "rules" };

    const adminKey = () => sessionStorage.getItem(KEY_STORAGE) || "";

    /** Call the admin API with the signed-in key; a refused key signs the merchandiser out. */
    async function call(path, options = {}) {
        try {
            return await api(path, { ...options, key: adminKey() });
        } catch (error) {
            if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
                signOut(`Signed out: ${error.message}`);
            }
            throw error;
        }
    }

    function say(text, isError = false) {
        const message = $("message");
        message.textContent = text;
        message.classList.toggle("error", isError);
    }

    function fail(prefix) {
        return (error) => say(`${prefix}: ${error.message}`, true);
    }

    // --- sign in -------------------------------------------------------------------------------

    async function signIn(key) {
        try {
            await api("/admin/weights", { key });
        } catch (error) {
            const reason =
                error instanceof ApiError && error.status === 403
                    ? "this key cannot reach admin routes (a search key, or no admin key exists yet)"
                    : error instanceof ApiError && error.status === 401
                      ? "unknown or revoked key"
                      : error.message;
            $("login-error").textContent = `Sign-in failed: ${reason}`;
            sessionStorage.removeItem(KEY_STORAGE);
            return;
        }
        sessionStorage.setItem(KEY_STORAGE, key);
        $("login-error").textContent = "";
        $("admin-key").value = "";
        $("login").classList.add("hidden");
        $("app").classList.remove("hidden");
        $("logout").classList.remove("hidden");
        $("whoami").textContent = `key ${key.split("_")[1] || ""}`;
        document.body.dataset.signedIn = "true";
        showTab(state.tab);
    }

    function signOut(reason = "") {
        sessionStorage.removeItem(KEY_STORAGE);
        $("app").classList.add("hidden");
        $("login").classList.remove("hidden");
        $("logout").classList.add("hidden");
        $("whoami").textContent = "";
        $("login-error").textContent = reason;
        document.body.dataset.signedIn = "false";
    }

    // --- tabs ----------------------------------------------------------------------------------

    const loaders = {
        rules: loadRules,
        weights: loadWeights,
        explain: () => {},
        experiments: loadExperiments,
        analytics: loadAnalytics,
        history: loadHistory,
    };

    function showTab(name) {
        state.tab = name;
        for (const button of document.querySelectorAll("nav.tabs button")) {
            button.setAttribute("aria-selected", button.dataset.tab === name ? "true" : "false");
        }
        for (const section of document.querySelectorAll("[role=tabpanel]")) {
            section.classList.toggle("hidden", section.id !== `tab-${name}`);
        }
        say("");
        Promise.resolve(loaders[name]()).catch(fail(`Could not load ${name}`));
    }

    // --- rules ---------------------------------------------------------------------------------

    function describeAction(action) {
        const ids = action.product_ids ? action.product_ids.join(", ") : "";
        const filter = action.filter ? JSON.stringify(action.filter) : "";
        const what = [ids, filter].filter(Boolean).join(" ");
        switch (action.type) {
            case "pin":
                return `pin ${action.product_id} at ${action.position}`;
            case "boost":
            case "bury":
                return `${action.type} ${what} by ${action.weight}`;
            case "hide":
                return `hide ${what}`;
            case "synonyms":
                return `synonyms ${action.words.join(action.one_way ? " → " : " = ")}`;
            case "redirect":
                return `redirect to ${action.url}`;
            default:
                return JSON.stringify(action);
        }
    }

    async function loadRules() {
        const data = await call("/admin/rules");
        state.version = data.version;
        $("rules-version").textContent = `(version ${data.version})`;
        fill(
            $("rules-body"),
            data.rules.length
                ? data.rules.map((rule) =>
                      el("tr", { dataset: { id: rule.id } },
                          el("td", {}, rule.id),
                          el("td", {}, rule.match),
                          el("td", {}, rule.query || "—"),
                          el("td", {}, (rule.actions || []).map(describeAction).join("; ")),
                          el("td", {}, String(rule.priority ?? 0)),
                          el("td", {}, rule.enabled === false ? "no" : "yes"),
                          el("td", {}, el("button", { type: "button", class: "delete-rule", onclick: () => deleteRule(rule.id) }, "Delete")),
                      ),
                  )
                : el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No rules yet.")),
        );
    }

    function splitList(text) {
        return text.split(",").map((s) => s.trim()).filter(Boolean);
    }

    /** The rule the form describes, in the admin API's JSON form. */
    function ruleFromForm() {
        const type = $("rule-action").value;
        const action = { type };
        if (type === "pin") {
            action.product_id = $("rule-product").value.trim();
            action.position = Number($("rule-position").value || 1);
        } else if (type === "boost" || type === "bury" || type === "hide") {
            action.product_ids = splitList($("rule-product").value);
            if (type !== "hide") action.weight = Number($("rule-weight").value || 0);
        } else if (type === "synonyms") {
            action.words = splitList($("rule-words").value);
            action.one_way = $("rule-one-way").checked;
        } else if (type === "redirect") {
            action.url = $("rule-url").value.trim();
        }
        const match = $("rule-match").value;
        const rule = {
            id: $("rule-id").value.trim(),
            match,
            query: match === "global" ? "" : $("rule-query").value,
            actions: [action],
            priority: Number($("rule-priority").value || 0),
        };
        const description = $("rule-description").value.trim();
        if (description) rule.description = description;
        return rule;
    }

    function showActionFields() {
        const type = $("rule-action").value;
        for (const node of document.querySelectorAll("#rule-form [data-for]")) {
            node.classList.toggle("hidden", !node.dataset.for.split(" ").includes(type));
        }
        $("rule-query").disabled = $("rule-match").value === "global";
    }

    async function previewRule() {
        const rule = ruleFromForm();
        if (!rule.id) rule.id = "preview"; // an id is required; nothing is saved
        const q = $("rule-preview-q").value.trim() || rule.query;
        const data = await call("/admin/preview", { method: "POST", json: { q, k: 10, rule } });
        renderPreview($("rule-preview-result"), data);
    }

    async function saveRule() {
        const rule = ruleFromForm();
        const params = state.version !== null ? { expected_version: state.version } : undefined;
        const data = await call("/admin/rules", { method: "POST", json: rule, params });
        let text = `Saved rule ${rule.id} (version ${data.version}).`;
        if (data.warnings && data.warnings.length) text += ` Unknown products: ${data.warnings.join(", ")}.`;
        say(text);
        await loadRules();
    }

    async function deleteRule(id) {
        if (!window.confirm(`Delete rule ${id}?`)) return;
        try {
            const data = await call(`/admin/rules/${encodeURIComponent(id)}`, { method: "DELETE" });
            say(`Deleted rule ${id} (version ${data.version}).`);
            await loadRules();
        } catch (error) {
            fail("Could not delete")(error);
        }
    }

    // --- preview -------------------------------------------------------------------------------

    const CHANGE_MARK = { up: "▲", down: "▼", new: "new", same: "" };

    function renderPreview(container, data) {
        const titles = new Map();
        for (const side of [data.before, data.after]) for (const hit of side.hits) titles.set(hit.id, hit.title);
        const effects = new Map(data.after.hits.map((h) => [h.id, h.rules || []]));
        const side = (name, rows, pick) =>
            el("div", { class: `preview-${name}` },
                el("h3", {}, name === "before" ? `Now (version ${data.version})` : "After the change"),
                el("table", {},
                    el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "Product"), name === "after" ? el("th", {}, "Change") : null)),
                    el("tbody", {},
                        rows.map((row) => {
                            const id = pick(row);
                            if (!id) return null;
                            const change = row.change || "same";
                            const mark = name === "after" ? `${CHANGE_MARK[change] ?? ""}${row.move && change !== "new" ? Math.abs(row.move) : ""}` : null;
                            const ruleNotes = name === "after" ? effects.get(id) || [] : [];
                            return el("tr", { dataset: { id, position: row.position, change }, class: name === "after" ? `change-${change}` : "" },
                                el("td", {}, String(row.position)),
                                el("td", {}, el("strong", {}, id), " ", titles.get(id) || "",
                                    ruleNotes.length ? el("div", { class: "muted" }, ruleNotes.map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("; ")) : null),
                                name === "after" ? el("td", {}, mark) : null,
                            );
                        }),
                    ),
                ),
                data[name].redirect ? el("p", { class: "muted" }, `Redirects to ${data[name].redirect}`) : null,
            );
        fill(container,
            el("h3", {}, `Preview for “${data.query}”`),
            el("div", { class: "side-by-side" }, side("before", data.rows, (r) => r.before), side("after", data.rows, (r) => r.after)),
        );
    }

    // --- weights -------------------------------------------------------------------------------

    async function loadWeights() {
        const data = await call("/admin/weights");
        state.version = data.version;
        state.weights = data.weights;
        $("weights-version").textContent = `(version ${data.version})`;
        const fields = [];
        for (const [name, value] of Object.entries(data.weights.retrievers || {})) {
            fields.push(weightField(`retrievers.${name}`, `${name} retriever`, value, 100));
        }
        for (const [name, value] of Object.entries(data.weights)) {
            if (name === "retrievers" || typeof value !== "number") continue;
            fields.push(weightField(name, name.replace(/_/g, " "), value, name === "personalisation" ? 0.9 : 100));
        }
        fill($("weights-form"), fields.flat());
    }

    function weightField(name, label, value, max) {
        const id = `weight-${name.replace(/\./g, "-")}`;
        return [
            el("label", { for: id }, label),
            el("input", { id, type: "number", step: "0.05", min: 0, max, value, dataset: { name } }),
        ];
    }

    function weightsFromForm() {
        const weights = { retrievers: {} };
        for (const input of $("weights-form").querySelectorAll("input[data-name]")) {
            const value = Number(input.value);
            const name = input.dataset.name;
            if (name.startsWith("retrievers.")) weights.retrievers[name.slice("retrievers.".length)] = value;
            else weights[name] = value;
        }
        return weights;
    }

    async function previewWeights() {
        const q = $("weights-preview-q").value.trim();
        const data = await call("/admin/preview", { method: "POST", json: { q, k: 10, weights: weightsFromForm() } });
        renderPreview($("weights-preview-result"), data);
    }

    async function saveWeights() {
        const params = state.version !== null ? { expected_version: state.version } : undefined;
        const data = await call("/admin/weights", { method: "PUT", json: weightsFromForm(), params });
        say(`Saved weights (version ${data.version}).`);
        await loadWeights();
    }

    // --- explain -------------------------------------------------------------------------------

    async function explain(q) {
        const data = await call("/search", { params: { q, k: 10, explain: true, as_you_type: false } });
        const rows = data.hits.map((hit, i) => {
            const x = hit.explanation || { retrievers: [], adjustments: [], matched_terms: {}, fused_score: null };
            const terms = Object.entries(x.matched_terms || {}).map(([term, found]) => `${term} → ${found.join(", ")}`);
            return el("tr", { dataset: { id: hit.id } },
                el("td", {}, String(i + 1)),
                el("td", {}, el("strong", {}, hit.id), " ", hit.title),
                el("td", {}, hit.score.toFixed(4)),
                el("td", {}, x.retrievers.map((r) => `${r.retriever} #${r.rank} (${r.score.toFixed(3)} × ${r.weight})`).join("; ")),
                el("td", {}, x.fused_score === null ? "" : x.fused_score.toFixed(4)),
                el("td", { class: "adjustments" }, x.adjustments.length ? el("ul", {}, x.adjustments.map((a) => el("li", {}, `${a.stage}: ${a.description}`))) : "—"),
                el("td", {}, terms.join("; ")),
            );
        });
        const header = [];
        if (data.corrected_query && data.corrected_query !== q) header.push(el("p", {}, `Understood as “${data.corrected_query}”.`));
        if (data.redirect) header.push(el("p", {}, `A rule redirects this query to ${data.redirect}.`));
        fill($("explain-result"),
            header,
            el("p", { class: "muted" }, `${data.total} matching products; top ${data.hits.length} explained.`),
            el("table", { id: "explain-table" },
                el("thead", {}, el("tr", {}, ["#", "Product", "Score", "Retrievers (rank, score × weight)", "Fused", "Re-rankers and rules", "Matched terms"].map((h) => el("th", {}, h)))),
                el("tbody", {}, rows),
            ),
        );
    }

    // --- experiments ---------------------------------------------------------------------------

    async function loadExperiments() {
        const data = await call("/admin/experiments");
        state.version = data.version;
        fill(
            $("experiments-body"),
            data.experiments.length
                ? data.experiments.map((e) =>
                      el("tr", { dataset: { id: e.id } },
                          el("td", {}, e.id),
                          el("td", {}, (e.variants || []).map((v) => `${v.name} ${percent(v.share, 0)}`).join(", ")),
                          el("td", {}, e.enabled === false ? "no" : "yes"),
                          el("td", {},
                              el("button", { type: "button", class: "report", onclick: () => showReport(e.id).catch(fail("Could not load the report")) }, "Report"), " ",
                              el("button", { type: "button", class: "delete-experiment", onclick: () => deleteExperiment(e.id) }, "Delete"),
                          ),
                      ),
                  )
                : el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No experiments yet.")),
        );
    }

    async function saveExperiment() {
        const id = $("experiment-id").value.trim();
        let variants;
        try {
            variants = JSON.parse($("experiment-variants").value);
        } catch (error) {
            say(`Variants are not valid JSON: ${error.message}`, true);
            return;
        }
        const params = state.version !== null ? { expected_version: state.version } : undefined;
        const data = await call(`/admin/experiments/${encodeURIComponent(id)}`, { method: "PUT", json: { id, variants }, params });
        say(`Saved experiment ${id} (version ${data.version}).`);
        await loadExperiments();
    }

    async function deleteExperiment(id) {
        if (!window.confirm(`Delete experiment ${id}?`)) return;
        try {
            await call(`/admin/experiments/${encodeURIComponent(id)}`, { method: "DELETE" });
            say(`Deleted experiment ${id}.`);
            await loadExperiments();
        } catch (error) {
            fail("Could not delete")(error);
        }
    }

    async function showReport(id) {
        const container = $("experiment-report");
        let data;
        try {
            data = await call(`/admin/experiments/${encodeURIComponent(id)}/report`);
        } catch (error) {
            if (!(error instanceof ApiError && error.status === 503)) throw error;
            // No event source wired into this service: let the merchandiser paste counts.
            const counts = el("textarea", { id: "report-counts", rows: 5, cols: 60 },
                '{"control": {"units": 1000, "clicked": 300, "converted": 40},\n "variant": {"units": 1000, "clicked": 330, "converted": 48}}');
            fill(container,
                el("p", { class: "muted" }, `${error.message}`),
                el("label", { for: "report-counts" }, "Counts per variant (JSON): "), counts,
                el("div", { class: "row" }, el("button", {
                    type: "button",
                    onclick: async () => {
                        try {
                            const body = { counts: JSON.parse(counts.value) };
                            renderReport(container, await call(`/admin/experiments/${encodeURIComponent(id)}/report`, { method: "POST", json: body }));
                        } catch (e) {
                            fail("Could not compute the report")(e);
                        }
                    },
                }, "Compute report")),
            );
            return;
        }
        renderReport(container, data);
    }

    function renderReport(container, data) {
        const row = (v) => {
            const p = v.ctr.p_value;
            return el("tr", { dataset: { variant: v.name } },
                el("td", {}, v.name === data.control ? `${v.name} (control)` : v.name),
                el("td", {}, String(v.counts.units)),
                el("td", {}, `${percent(v.ctr.rate)} [${percent(v.ctr.low)}–${percent(v.ctr.high)}]`),
                el("td", {}, v.ctr.lift === null || v.ctr.lift === undefined ? "—" : percent(v.ctr.lift)),
                el("td", {}, p === null || p === undefined ? "—" : p.toFixed(3)),
                el("td", {}, `${percent(v.conversion.rate)} [${percent(v.conversion.low)}–${percent(v.conversion.high)}]`),
                el("td", {}, v.conversion.p_value === null || v.conversion.p_value === undefined ? "—" : v.conversion.p_value.toFixed(3)),
            );
        };
        fill(container,
            el("h3", {}, `Report: ${data.experiment}`),
            el("table", { id: "report-table" },
                el("thead", {}, el("tr", {}, ["Variant", "Units", "Click-through (95% CI)", "Lift", "p", "Conversion (95% CI)", "p"].map((h) => el("th", {}, h)))),
                el("tbody", {}, data.variants.map(row)),
            ),
            el("h4", {}, "Click-through with 95% intervals"),
            intervalChart(data.variants.map((v) => ({ label: v.name, rate: v.ctr.rate, low: v.ctr.low, high: v.ctr.high })), { label: "click-through per variant" }),
            data.ignored_variants && data.ignored_variants.length ? el("p", { class: "muted" }, `Ignored: ${data.ignored_variants.join(", ")}`) : null,
        );
    }

    // --- analytics -----------------------------------------------------------------------------

    function rangeParams() {
        const params = {};
        const start = $("analytics-start").value;
        const end = $("analytics-end").value;
        if (start) params.start = `${start}T00:00:00Z`;
        if (end) params.end = `${end}T23:59:59Z`;
        return params;
    }

    async function loadAnalytics() {
        const range = rangeParams();
        const [top, zero] = await Promise.all([
            call("/analytics/queries", { params: { ...range, order: "searches", limit: 10 } }),
            call("/analytics/queries", { params: { ...range, order: "zero_results", limit: 10 } }),
        ]);
        const topRows = top.queries.map((q) => ({ label: q.query, value: q.searches, title: `${q.query}: ${q.searches} searches, click-through ${percent(q.click_through_rate)}` }));
        const zeroRows = zero.queries.filter((q) => q.zero_result_searches > 0).map((q) => ({ label: q.query, value: q.zero_result_searches }));
        fill($("chart-top"), topRows.length ? barChart(topRows, { label: "top queries by searches" }) : el("p", { class: "muted" }, "No searches in this range."));
        fill($("chart-zero"), zeroRows.length ? barChart(zeroRows, { className: "zero", label: "zero-result queries" }) : el("p", { class: "muted" }, "No zero-result queries in this range."));
        fill($("analytics-body"),
            top.queries.map((q) =>
                el("tr", { dataset: { query: q.query } },
                    el("td", {}, q.query),
                    el("td", {}, String(q.searches)),
                    el("td", {}, String(q.zero_result_searches)),
                    el("td", {}, percent(q.click_through_rate)),
                    el("td", {}, percent(q.add_to_cart_rate)),
                    el("td", {}, percent(q.conversion_rate)),
                ),
            ),
        );
    }

    // --- history -------------------------------------------------------------------------------

    async function loadHistory() {
        const data = await call("/admin/versions", { params: { limit: 50 } });
        fill($("versions-body"),
            data.versions.map((v) =>
                el("tr", { dataset: { version: v.version } },
                    el("td", {}, v.version === data.current ? `${v.version} (current)` : String(v.version)),
                    el("td", {}, new Date(v.created_at).toLocaleString()),
                    el("td", {}, v.actor),
                    el("td", {}, v.comment || ""),
                    el("td", {}, v.version === data.current ? "" : el("button", { type: "button", onclick: () => rollback(v.version) }, "Roll back to this")),
                ),
            ),
        );
    }

    async function rollback(version) {
        if (!window.confirm(`Make version ${version} current again?`)) return;
        try {
            const data = await call(`/admin/rollback/${version}`, { method: "POST" });
            say(`Restored version ${version} as version ${data.version}.`);
            await loadHistory();
        } catch (error) {
            fail("Could not roll back")(error);
        }
    }

    // --- wiring --------------------------------------------------------------------------------

    const guard = (prefix, fn) => () => fn().catch(fail(prefix));

    $("login-form").addEventListener("submit", (event) => {
        event.preventDefault();
        signIn($("admin-key").value.trim());
    });
    $("logout").addEventListener("click", () => signOut());
    for (const button of document.querySelectorAll("nav.tabs button")) {
        button.addEventListener("click", () => showTab(button.dataset.tab));
    }
    $("rule-action").addEventListener("change", showActionFields);
    $("rule-match").addEventListener("change", showActionFields);
    $("rule-preview").addEventListener("click", guard("Preview failed", previewRule));
    $("rule-save").addEventListener("click", guard("Could not save the rule", saveRule));
    $("weights-preview").addEventListener("click", guard("Preview failed", previewWeights));
    $("weights-save").addEventListener("click", guard("Could not save the weights", saveWeights));
    $("explain-form").addEventListener("submit", (event) => {
        event.preventDefault();
        explain($("explain-q").value).catch(fail("Explain failed"));
    });
    $("experiment-save").addEventListener("click", guard("Could not save the experiment", saveExperiment));
    $("analytics-form").addEventListener("submit", (event) => {
        event.preventDefault();
        loadAnalytics().catch(fail("Could not load analytics"));
    });

    showActionFields();
    if (adminKey()) signIn(adminKey());
    document.body.dataset.ready = "true";
})();
