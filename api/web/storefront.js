// The storefront demo: as-you-type search and suggestions, facets with colour swatches, photo
// and voice search, and shopper events (view, click, add to cart, search) for the behavioural
// ranking and the merchandisers' analytics.
"use strict";

(() => {
    const { api, ApiError, el, fill, money, randomId, debounce } = PS;

    const KEY_STORAGE = "productsearch.searchKey";
    const SESSION_STORAGE = "productsearch.sessionId";
    const FACETS = "colour,brand,category,availability,price";
    const FACETS_WITHOUT_COLOUR = "brand,category,availability,price";
    const FACET_TITLES = { colour: "Colour", brand: "Brand", category: "Category", availability: "Availability", price: "Price" };
    const PAGE_SIZE = 12;
    const MAX_RECORDING_MS = 8000;
    const SEARCH_EVENT_DELAY_MS = 900;

    const $ = (id) => document.getElementById(id);
    const input = $("q");
    const suggestionList = $("suggestions");

    const state = {
        q: "",
        filters: { brand: [], category: [], availability: [], colour: null, price: null },
        mode: "text", // "text" | "photo"
        photo: null, // the File of the current photo search
        facets: FACETS,
        hits: [],
        query: "", // the query the shown hits answer (for events)
        queryId: null, // the service's id of the shown answer: events cite it instead of the result list
        variant: undefined, // A/B assignment as the search answer reports it, if it does
        eventsTakeVariant: true,
        cart: 0,
        suggestionIndex: -1,
        searchSeq: 0,
        suggestSeq: 0,
        searchController: null,
        lastSearchEvent: "",
        imageUrls: new Map(),
    };

    const sessionId = (() => {
        let id = sessionStorage.getItem(SESSION_STORAGE);
        if (!id) {
            id = `web-${randomId()}`;
            sessionStorage.setItem(SESSION_STORAGE, id);
        }
        return id;
    })();

    /** The search key: one the shopper entered, else the one the page was served with. */
    function searchKey() {
        const entered = sessionStorage.getItem(KEY_STORAGE);
        if (entered) return entered;
        const meta = document.querySelector('meta[name="productsearch-search-key"]');
        const served = meta ? meta.content.trim() : "";
        return served && !served.startsWith("{{") ? served : "";
    }

    function needKey(error) {
        if (error instanceof ApiError && error.status === 401) {
            $("key-panel").classList.remove("hidden");
            setStatus("This service needs a search API key.", true);
            return true;
        }
        return false;
    }

    function setStatus(text, isError = false) {
        const status = $("status");
        status.textContent = text;
        status.classList.toggle("error", isError);
    }

    function setBusy(busy) {
        document.body.dataset.busy = busy ? "true" : "false";
    }

    // --- filters -----------------------------------------------------------------------------

    function filterParams() {
        const f = state.filters;
        const params = { brand: f.brand, category: f.category, availability: f.availability, colour: f.colour };
        if (f.price) {
            const range = parsePriceBucket(f.price);
            params.price_min = range.min;
            params.price_max = range.max;
        }
        return params;
    }

    /** "20-25" -> {min: 20, max: 25}; "500+" -> {min: 500}; "<50" -> {max: 50}. */
    function parsePriceBucket(value) {
        const text = String(value).replace(/[^\d.+<>-]/g, "");
        let m = text.match(/^(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$/);
        if (m) return { min: Number(m[1]), max: Number(m[2]) };
        m = text.match(/^(\d+(?:\.\d+)?)\+$/) || text.match(/^>(\d+(?:\.\d+)?)$/);
        if (m) return { min: Number(m[1]) };
        m = text.match(/^<(\d+(?:\.\d+)?)$/) || text.match(/^-(\d+(?:\.\d+)?)$/);
        if (m) return { max: Number(m[1]) };
        return {};
    }

    function isActive(facet, value) {
        const current = state.filters[facet];
        return Array.isArray(current) ? current.includes(value) : current === value;
    }

    function toggleFilter(facet, value) {
        const f = state.filters;
        if (Array.isArray(f[facet])) {
            f[facet] = f[facet].includes(value) ? f[facet].filter((v) => v !== value) : [...f[facet], value];
        } else {
            f[facet] = f[facet] === value ? null : value;
        }
        refresh();
    }

    function refresh() {
        if (state.mode === "photo" && state.photo) searchPhoto(state.photo);
        else runSearch({ immediateEvent: true });
    }

    // --- text search ---------------------------------------------------------------------------

    async function runSearch({ immediateEvent = false } = {}) {
        const seq = ++state.searchSeq;
        if (state.searchController) state.searchController.abort();
        const controller = new AbortController();
        state.searchController = controller;
        const params = {
            q: state.q,
            k: PAGE_SIZE,
            facets: state.facets,
            session_id: sessionId,
            channel: "web",
            ...filterParams(),
        };
        setBusy(true);
        try {
            const data = await api("/search", { params, key: searchKey(), signal: controller.signal });
            if (seq !== state.searchSeq) return;
            showAnswer(data, state.q);
            if (data.redirect) {
                setStatus(`A merchandiser sends “${state.q}” to ${data.redirect}`);
            }
            if (state.q.trim()) scheduleSearchEvent(immediateEvent);
        } catch (error) {
            if (error.name === "AbortError" || seq !== state.searchSeq) return;
            if (isFacetError(error) && state.facets !== FACETS_WITHOUT_COLOUR) {
                state.facets = FACETS_WITHOUT_COLOUR; // a snapshot built without colours
                runSearch({ immediateEvent });
                return;
            }
            if (!needKey(error)) setStatus(`Search failed: ${error.message}`, true);
        } finally {
            if (seq === state.searchSeq) setBusy(false);
        }
    }

    function isFacetError(error) {
        return error instanceof ApiError && error.status === 422 && JSON.stringify(error.detail || "").includes("facets");
    }

    /** Remember the A/B variant the search answer reports, whatever the field is called. */
    function rememberVariant(data) {
        for (const name of ["variants", "variant", "experiments"]) {
            const value = data ? data[name] : undefined;
            const empty = value === undefined || value === null || value === "" || (typeof value === "object" && Object.keys(value).length === 0);
            if (!empty) {
                state.variant = { field: name, value };
                return;
            }
        }
        state.variant = undefined;
    }

    function showAnswer(data, query) {
        state.hits = data.hits || [];
        state.query = query;
        state.queryId = data.query_id || null;
        rememberVariant(data);
        renderFacets(data.facets || {});
        renderActiveFilters();
        renderResults(state.hits);
        const shown = state.hits.length;
        const total = data.total ?? shown;
        let text;
        if (!query.trim() && state.mode === "text") text = `${total} products`;
        else text = `${total} result${total === 1 ? "" : "s"}${query.trim() ? ` for “${query}”` : ""}`;
        if (data.corrected_query && data.corrected_query !== query) text += ` (showing results for “${data.corrected_query}”)`;
        if (data.fallback === "semantic") text += " — nothing matched exactly; these are the closest products";
        setStatus(text);
    }

    // --- suggestions ---------------------------------------------------------------------------

    async function runSuggest() {
        const seq = ++state.suggestSeq;
        const q = input.value;
        if (!q.trim()) {
            hideSuggestions();
            return;
        }
        try {
            const data = await api("/suggest", { params: { q, k: 6, session_id: sessionId }, key: searchKey() });
            if (seq !== state.suggestSeq || document.activeElement !== input) return;
            renderSuggestions(data.suggestions || []);
        } catch (error) {
            if (!needKey(error)) hideSuggestions();
        }
    }

    function renderSuggestions(suggestions) {
        state.suggestionIndex = -1;
        if (!suggestions.length) {
            hideSuggestions();
            return;
        }
        fill(
            suggestionList,
            suggestions.map((s, i) =>
                el(
                    "li",
                    {
                        role: "option",
                        id: `suggestion-${i}`,
                        "aria-selected": "false",
                        dataset: { text: s.text },
                        onmousedown: (event) => {
                            event.preventDefault(); // keep the focus in the box
                            pickSuggestion(s.text);
                        },
                    },
                    s.text,
                    el("span", { class: "kind" }, s.kind === "query" ? "popular" : ""),
                ),
            ),
        );
        suggestionList.classList.remove("hidden");
        input.setAttribute("aria-expanded", "true");
    }

    function hideSuggestions() {
        suggestionList.classList.add("hidden");
        input.setAttribute("aria-expanded", "false");
        state.suggestionIndex = -1;
    }

    function moveSuggestion(step) {
        const items = [...suggestionList.querySelectorAll("li")];
        if (!items.length || suggestionList.classList.contains("hidden")) return;
        state.suggestionIndex = (state.suggestionIndex + step + items.length) % items.length;
        items.forEach((item, i) => item.setAttribute("aria-selected", i === state.suggestionIndex ? "true" : "false"));
        input.setAttribute("aria-activedescendant", items[state.suggestionIndex].id);
    }

    function pickSuggestion(text) {
        input.value = text;
        state.q = text;
        state.mode = "text";
        hideSuggestions();
        runSearch({ immediateEvent: true });
    }

    // --- rendering -----------------------------------------------------------------------------

    function renderFacets(facets) {
        const aside = $("facets");
        const blocks = [];
        for (const name of Object.keys(facets)) {
            const buckets = facets[name] || [];
            if (!buckets.length) continue;
            const title = FACET_TITLES[name] || name.replace(/^attr:/, "");
            if (name === "colour") {
                blocks.push(
                    el("section", { class: "facet", dataset: { facet: name } },
                        el("h3", {}, title),
                        el("div", { class: "swatches" },
                            buckets.map((b) =>
                                el("button", {
                                    type: "button",
                                    class: "swatch",
                                    title: `${b.value} (${b.count})`,
                                    "aria-label": `${b.value} (${b.count})`,
                                    "aria-pressed": isActive("colour", b.value) ? "true" : "false",
                                    dataset: { value: b.value },
                                    style: { background: b.swatch || b.hex || b.value },
                                    onclick: () => toggleFilter("colour", b.value),
                                }),
                            ),
                        ),
                    ),
                );
                continue;
            }
            const key = name.startsWith("attr:") ? null : name;
            if (!key) continue;
            blocks.push(
                el("section", { class: "facet", dataset: { facet: name } },
                    el("h3", {}, title),
                    el("ul", {},
                        buckets.slice(0, 12).map((b) =>
                            el("li", {},
                                el("button", {
                                    type: "button",
                                    "aria-pressed": isActive(key, b.value) ? "true" : "false",
                                    dataset: { value: b.value },
                                    onclick: () => toggleFilter(key, b.value),
                                }, labelOf(key, b.value), el("span", { class: "count" }, `(${b.count})`)),
                            ),
                        ),
                    ),
                ),
            );
        }
        fill(aside, blocks);
    }

    function labelOf(facet, value) {
        if (facet === "availability") return value.replace(/_/g, " ");
        return value;
    }

    function renderActiveFilters() {
        const chips = [];
        for (const [facet, value] of Object.entries(state.filters)) {
            const values = Array.isArray(value) ? value : value ? [value] : [];
            for (const v of values) {
                chips.push(
                    el("span", { class: "chip", dataset: { facet, value: v } },
                        `${FACET_TITLES[facet] || facet}: ${labelOf(facet, v)} `,
                        el("button", { type: "button", "aria-label": `Remove ${v}`, onclick: () => toggleFilter(facet, v) }, "×"),
                    ),
                );
            }
        }
        fill($("active-filters"), chips);
    }

    function renderResults(hits) {
        fill(
            $("results"),
            hits.map((hit, i) => {
                const image = el("img", { class: "thumb", alt: "", loading: "lazy" });
                if (hit.image) loadImage(image, hit.image);
                return el("li", { class: "card", dataset: { id: hit.id, position: i + 1 } },
                    image,
                    el("button", { type: "button", class: "title", onclick: () => openProduct(hit, i + 1) }, hit.title),
                    hit.brand ? el("span", { class: "muted" }, hit.brand) : null,
                    el("span", { class: "price" }, money(hit.price, hit.currency)),
                    el("span", { class: "dots" },
                        (hit.colours || []).slice(0, 4).map((c) =>
                            el("span", { class: "dot", title: `${c.name} (${c.source})`, style: { background: c.hex } }),
                        ),
                    ),
                    el("button", { type: "button", class: "add-to-cart", onclick: () => addToCart(hit, i + 1) }, "Add to cart"),
                );
            }),
        );
    }

    /** Show a product image; same-origin images need the API key when keys are required. */
    async function loadImage(img, url) {
        const key = searchKey();
        if (!key || !url.startsWith("/")) {
            img.src = url;
            return;
        }
        try {
            let objectUrl = state.imageUrls.get(url);
            if (!objectUrl) {
                const response = await fetch(url, { headers: { Authorization: `Bearer ${key}` } });
                if (!response.ok) return;
                objectUrl = URL.createObjectURL(await response.blob());
                state.imageUrls.set(url, objectUrl);
            }
            img.src = objectUrl;
        } catch (_) {
            // a missing picture is not worth an error message
        }
    }

    async function openProduct(hit, position) {
        sendEvents([productEvent("click", hit.id, position), productEvent("view", hit.id, position)]);
        const panel = $("detail");
        try {
            const product = await api(`/products/${encodeURIComponent(hit.id)}`, { key: searchKey() });
            fill(panel,
                el("h2", {}, product.title),
                el("p", { class: "muted" }, [product.brand, ...(product.categories || [])].filter(Boolean).join(" · ")),
                el("p", {}, product.description || ""),
                el("p", { class: "price" }, product.effective_price ? money(product.effective_price.amount, product.effective_price.currency) : ""),
                el("p", { class: "dots" }, (product.colours || []).map((c) => el("span", { class: "dot", title: c.name, style: { background: c.hex } }))),
                el("div", { class: "row" },
                    el("button", { type: "button", class: "primary", onclick: () => addToCart(hit, position) }, "Add to cart"),
                    el("button", { type: "button", onclick: () => panel.classList.add("hidden") }, "Close"),
                ),
            );
            panel.dataset.id = product.id;
            panel.classList.remove("hidden");
        } catch (error) {
            if (!needKey(error)) setStatus(`Could not open the product: ${error.message}`, true);
        }
    }

    function addToCart(hit, position) {
        state.cart += 1;
        $("cart").textContent = `Cart: ${state.cart}`;
        sendEvents([productEvent("add_to_cart", hit.id, position)]);
    }

    // --- events --------------------------------------------------------------------------------

    function baseEvent(type) {
        const event = { type, session_id: sessionId, channel: "web", timestamp: Date.now() / 1000 };
        if (state.variant && state.eventsTakeVariant) event[state.variant.field] = state.variant.value;
        return event;
    }

    function productEvent(type, productId, position) {
        const event = { ...baseEvent(type), product_id: productId, position };
        if (state.query.trim()) event.query = state.query;
        // The service recorded what it showed: it takes the query and position from its own record.
        if (state.queryId) event.query_id = state.queryId;
        return event;
    }

    const flushSearchEvent = debounce(() => postSearchEvent(), SEARCH_EVENT_DELAY_MS);

    function scheduleSearchEvent(immediate) {
        if (immediate) {
            flushSearchEvent.cancel();
            postSearchEvent();
        } else {
            flushSearchEvent();
        }
    }

    /** One search event per settled query and filter set (not one per keystroke). */
    function postSearchEvent() {
        const query = state.query.trim();
        // An answer with a query_id was recorded by the service itself; reporting it again would count it twice.
        if (!query || state.queryId) return;
        const signature = JSON.stringify([query, state.filters]);
        if (signature === state.lastSearchEvent) return;
        state.lastSearchEvent = signature;
        sendEvents([{ ...baseEvent("search"), query, results: state.hits.map((h) => h.id) }]);
    }

    async function sendEvents(events) {
        try {
            const answer = await api("/events", { method: "POST", json: { events }, key: searchKey() });
            document.body.dataset.eventsSent = String(Number(document.body.dataset.eventsSent || 0) + (answer.accepted || 0));
        } catch (error) {
            // The service may not know the variant field yet: send the events without it.
            const variantField = state.variant && state.variant.field;
            if (error instanceof ApiError && error.status === 422 && variantField && JSON.stringify(error.detail || "").includes(variantField)) {
                state.eventsTakeVariant = false;
                sendEvents(events.map((e) => {
                    const copy = { ...e };
                    delete copy[variantField];
                    return copy;
                }));
                return;
            }
            // Events are best effort: shopping goes on without them.
            console.warn("events not recorded:", error.message);
        }
    }

    // --- photo search --------------------------------------------------------------------------

    async function searchPhoto(file) {
        state.mode = "photo";
        state.photo = file;
        const form = new FormData();
        form.append("image", file, file.name || "photo.jpg");
        form.append("k", String(PAGE_SIZE));
        form.append("facets", state.facets);
        const params = filterParams();
        for (const [name, value] of Object.entries(params)) {
            for (const v of Array.isArray(value) ? value : [value]) {
                if (v !== null && v !== undefined && v !== "") form.append(name, String(v));
            }
        }
        const panel = $("photo-result");
        const preview = el("img", { class: "thumb", alt: "your photo", style: { width: "64px", height: "64px" } });
        preview.src = URL.createObjectURL(file);
        fill(panel, preview, " Searching with your photo… ");
        panel.classList.remove("hidden");
        $("voice-result").classList.add("hidden");
        setBusy(true);
        try {
            const data = await api("/search/image", { method: "POST", form, key: searchKey() });
            state.q = "";
            input.value = "";
            showAnswer(data, "");
            fill(panel, preview, ` Products that look like ${file.name || "your photo"}. `,
                el("button", { type: "button", id: "clear-photo", onclick: clearPhoto }, "Clear photo"));
            setStatus(`${data.total} products look like your photo`);
        } catch (error) {
            if (!needKey(error)) {
                fill(panel, preview, el("span", { class: "error" }, ` Photo search failed: ${error.message}`));
            }
        } finally {
            setBusy(false);
        }
    }

    function clearPhoto() {
        state.mode = "text";
        state.photo = null;
        $("photo-result").classList.add("hidden");
        runSearch();
    }

    // --- voice search --------------------------------------------------------------------------

    let recorder = null;
    let stopTimer = null;

    function setUpMicrophone() {
        const mic = $("mic");
        const usable = navigator.mediaDevices && typeof navigator.mediaDevices.getUserMedia === "function" && typeof window.MediaRecorder === "function";
        if (!usable) {
            mic.disabled = true;
            mic.title = "The microphone needs HTTPS (or localhost) and a browser with MediaRecorder; upload a recording instead.";
            return;
        }
        mic.addEventListener("click", () => (recorder ? stopRecording() : startRecording()));
    }

    function recordingType() {
        const types = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"];
        return types.find((t) => MediaRecorder.isTypeSupported(t)) || "";
    }

    async function startRecording() {
        const mic = $("mic");
        let stream;
        try {
            stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        } catch (error) {
            showVoice(el("span", { class: "error" }, `No microphone: ${error.message}`));
            return;
        }
        const type = recordingType();
        const chunks = [];
        recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
        recorder.addEventListener("dataavailable", (event) => {
            if (event.data && event.data.size) chunks.push(event.data);
        });
        recorder.addEventListener("stop", () => {
            stream.getTracks().forEach((t) => t.stop());
            const mime = recorder.mimeType || type || "audio/webm";
            recorder = null;
            mic.classList.remove("recording");
            $("mic-label").textContent = "Speak";
            const blob = new Blob(chunks, { type: mime.split(";")[0] });
            const ext = mime.includes("ogg") ? "ogg" : mime.includes("mp4") ? "m4a" : "webm";
            searchVoice(blob, `recording.${ext}`);
        });
        recorder.start();
        mic.classList.add("recording");
        $("mic-label").textContent = "Stop";
        document.body.dataset.recording = "true";
        showVoice("Listening… click Stop when you are done.");
        clearTimeout(stopTimer);
        stopTimer = setTimeout(stopRecording, MAX_RECORDING_MS);
    }

    function stopRecording() {
        clearTimeout(stopTimer);
        document.body.dataset.recording = "false";
        if (recorder && recorder.state !== "inactive") recorder.stop();
    }

    function showVoice(...children) {
        const panel = $("voice-result");
        fill(panel, ...children);
        panel.classList.remove("hidden");
    }

    async function searchVoice(blob, name) {
        const form = new FormData();
        form.append("audio", blob, name);
        form.append("k", String(PAGE_SIZE));
        form.append("facets", state.facets);
        $("photo-result").classList.add("hidden");
        showVoice("Recognising…");
        setBusy(true);
        try {
            const data = await api("/search/voice", { method: "POST", form, key: searchKey() });
            const parts = [el("div", {}, "Heard: ", el("q", { id: "transcript" }, data.transcript || ""))];
            if (data.query && data.query !== data.transcript) parts.push(el("div", { class: "muted" }, "Searched: ", el("q", {}, data.query)));
            for (const change of data.changes || []) {
                parts.push(el("div", { class: "muted" }, `“${change.heard}” → “${change.catalogue}”`));
            }
            if (data.message) parts.push(el("div", { class: "muted" }, data.message));
            showVoice(...parts);
            state.mode = "text";
            state.photo = null;
            state.q = data.query || "";
            input.value = state.q;
            showAnswer(data, state.q);
            if (state.q.trim()) scheduleSearchEvent(true);
        } catch (error) {
            if (!needKey(error)) showVoice(el("span", { class: "error" }, `Voice search failed: ${error.message}`));
        } finally {
            setBusy(false);
        }
    }

    // --- wiring --------------------------------------------------------------------------------

    const searchSoon = debounce(() => runSearch(), 120);
    const suggestSoon = debounce(runSuggest, 80);

    input.addEventListener("input", () => {
        state.q = input.value;
        state.mode = "text";
        state.photo = null;
        $("photo-result").classList.add("hidden");
        searchSoon();
        suggestSoon();
    });
    input.addEventListener("keydown", (event) => {
        if (event.key === "ArrowDown") {
            event.preventDefault();
            moveSuggestion(1);
        } else if (event.key === "ArrowUp") {
            event.preventDefault();
            moveSuggestion(-1);
        } else if (event.key === "Escape") {
            hideSuggestions();
        } else if (event.key === "Enter") {
            event.preventDefault();
            const items = suggestionList.querySelectorAll("li");
            if (state.suggestionIndex >= 0 && items[state.suggestionIndex]) {
                pickSuggestion(items[state.suggestionIndex].dataset.text);
            } else {
                hideSuggestions();
                searchSoon.cancel();
                state.q = input.value;
                runSearch({ immediateEvent: true });
            }
        }
    });
    input.addEventListener("blur", () => setTimeout(hideSuggestions, 150));

    $("photo").addEventListener("change", (event) => {
        const file = event.target.files && event.target.files[0];
        if (file) searchPhoto(file);
        event.target.value = "";
    });
    $("voice-file").addEventListener("change", (event) => {
        const file = event.target.files && event.target.files[0];
        if (file) searchVoice(file, file.name || "recording");
        event.target.value = "";
    });
    $("key-form").addEventListener("submit", (event) => {
        event.preventDefault();
        const value = $("search-key").value.trim();
        if (!value) return;
        sessionStorage.setItem(KEY_STORAGE, value);
        $("key-panel").classList.add("hidden");
        refresh();
    });

    setUpMicrophone();
    runSearch(); // the catalogue's first page and its facets, before anything is typed
    document.body.dataset.ready = "true";
})();
